"""The model API shared by every family: backbone + classification head.

``model.backbone`` and ``model.cls_head`` (with ``fc_cls``) are named as in mmaction2 0.x, which the paper's
authors fine-tuned with, so their checkpoints load strictly; their timm pre-training checkpoints name the backbone
``get_feature.*`` (see :mod:`vidprior.models.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def init_weights(module: nn.Module, *, zero_init_residual: Sequence[nn.BatchNorm3d] = ()) -> None:
    """mmaction2's initialisation: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0, and the listed
    BNs (last BN of each residual block when ``zero_init_residual``) at weight 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for bn in zero_init_residual:
        nn.init.zeros_(bn.weight)


def _pool(x: Tensor) -> Tensor:
    """Global average over every dimension after channels: (B, C, T, H, W) or (B, C, H, W) -> (B, C)."""
    return x.flatten(2).mean(dim=2)


class ClsHead(nn.Module):
    """Global average pool -> dropout -> ``fc_cls`` (mmaction2's I3DHead).

    Subclasses add layers between the pooling and the classifier in :meth:`_build_neck` and may name the classifier
    differently (:attr:`classifier`; ``fc_cls`` then stays an alias of it).
    """

    classifier = "fc_cls"  # attribute name of the classifier (its state-dict prefix inside the head)

    def __init__(self, in_features: int, num_classes: int, *, dropout: float = 0.5, init_std: float = 0.01) -> None:
        super().__init__()
        self.in_features = in_features
        self.init_std = init_std
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._build_neck()
        setattr(self, self.classifier, self._make_fc(num_classes))

    def _build_neck(self) -> None:
        """Layers between the pooled features and the classifier (none here), created before the classifier."""

    @property
    def pre_logits_features(self) -> int:
        return self.in_features

    def _make_fc(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.pre_logits_features, num_classes)
        nn.init.normal_(fc.weight, std=self.init_std)
        nn.init.zeros_(fc.bias)
        return fc

    def reset(self, num_classes: int) -> None:
        setattr(self, self.classifier, self._make_fc(num_classes))

    def pooled(self, x: Tensor) -> Tensor:
        return _pool(x)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.pooled(x))  # (B, C)
        return x if pre_logits else self.fc_cls(x)


class VideoClassifier(nn.Module):
    """``backbone`` -> ``cls_head``. Takes one clip ``(B, 3, T, H, W)``; returns logits ``(B, num_classes)``.

    Attributes:
        num_features: size of the vector ``forward_head(x, pre_logits=True)`` returns.
        default_clip: (frames, sampling interval) the paper's recipe feeds this model on Kinetics.
        sts_layers: names of the convs the paper made STS (``create_model(..., sts=True)``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        cls_head: ClsHead,
        *,
        default_clip: tuple[int, int] = (8, 8),
        sts_layers: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head
        self.default_clip = default_clip
        self.sts_layers = list(sts_layers)

    @property
    def num_features(self) -> int:
        return self.cls_head.pre_logits_features

    @property
    def num_classes(self) -> int:
        fc = self.cls_head.fc_cls
        return fc.out_features if isinstance(fc, nn.Linear) else 0

    def forward_features(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.backbone(x)  # (B, 3, T, H, W) -> (B, C, T', H', W') (SlowFast: one per pathway)

    def forward_head(self, x: Tensor | tuple[Tensor, ...], pre_logits: bool = False) -> Tensor:
        return self.cls_head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))  # (B, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (0 removes it: ``forward`` then returns ``num_features`` pooled features)."""
        self.cls_head.reset(num_classes)


def count_sts_layers(model: nn.Module) -> int:
    from vidprior.layers.sts import STSConv3d

    return sum(isinstance(m, STSConv3d) for m in model.modules())


__all__ = ["ClsHead", "VideoClassifier", "count_sts_layers", "init_weights"]
