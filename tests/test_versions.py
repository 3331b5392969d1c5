from autoslim.versions import installed_versions


def test_installed_versions_names_what_is_installed_and_leaves_out_the_rest():
    found = installed_versions(("torch", "optuna", "no-such-package-autoslim"))
    assert set(found) == {"torch", "optuna"}
    assert found["torch"].startswith("2.")
