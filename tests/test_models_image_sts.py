"""STS during image pre-training (paper Table 10, §3.4): the image view of an STS layer computes what the 3D STS
layer computes on a one-frame clip, keeps the 3D parameter names and shapes, and its checkpoint goes back into
the video model with every static side tap it learned."""

from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tests._util import randomize
from vidprior import STSConv3d, create_model, image_model, list_models
from vidprior.errors import UnsupportedConvError, VidpriorError
from vidprior.layers.sts import LAYOUTS, STATIC_MODES
from vidprior.models import ImageSTSConv, is_image_view
from vidprior.models.weight_sources import load_initial_weights

TINY = [n for n in list_models() if n.endswith("_tiny")]
FULL = [n for n in list_models() if not n.endswith("_tiny")]
CASES = [(s, m, lay) for s, m, lay in itertools.product([True, "all"], STATIC_MODES, LAYOUTS)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _build(name: str, sts, mode: str, layout: str, **kw) -> nn.Module:
    try:
        return create_model(name, num_classes=6, sts=sts, static_mode=mode, layout=layout, **kw)
    except UnsupportedConvError as e:  # e.g. the authors' layout has no dilated mode
        pytest.skip(str(e))


@pytest.mark.parametrize("sts,mode,layout", CASES)
@pytest.mark.parametrize("name", TINY)
def test_image_view_of_sts_model_equals_one_frame_clip(name, sts, mode, layout):
    torch.manual_seed(0)
    model = randomize(_build(name, sts, mode, layout)).double().eval()
    for p in model.parameters():  # every tap non-zero, so a dropped or misplaced side slice shows
        nn.init.normal_(p, std=0.3)
    view = image_model(model)
    assert is_image_view(view) and not is_image_view(model)
    sts_names = [n for n, m in model.named_modules() if isinstance(m, STSConv3d) and m.num_static > 0]
    assert sts_names and all(isinstance(view.get_submodule(n), ImageSTSConv) for n in sts_names)
    w3, w2 = model.state_dict(), view.state_dict()
    assert list(w2) == list(w3)
    for n in sts_names:
        assert w2[f"{n}.weight"].shape == w3[f"{n}.weight"].shape  # the 3D kernel, all three slices
    img = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = model(img.unsqueeze(2))
        got = view(img)
    assert _rel(got, expected) < 1e-5
    # the old centre-slice view differs: the static side slices matter
    centre = image_model(model, tap=0)
    assert isinstance(centre.get_submodule(sts_names[0]), ImageSTSConv)


def _conv_geometries(name: str) -> set[tuple]:
    """Every geometry (kernel, stride, padding, kind of grouping, bias) of the convs that ``sts='all'`` turns into STS
    in a full-size model, with channels cut to at most 8 (4 groups) so that the check stays cheap."""
    with torch.device("meta"):
        model = create_model(name, num_classes=10, sts="all")
    out = set()
    for m in model.modules():
        if not isinstance(m, STSConv3d):
            continue
        if m.groups == 1:
            cin, cout, groups = min(m.in_channels, 8), min(m.out_channels, 8), 1
        elif m.groups == m.in_channels == m.out_channels:  # depthwise
            cin = cout = groups = 8
        else:
            groups = min(m.groups, 4)
            cin, cout = groups * (m.in_channels // m.groups), groups * (m.out_channels // m.groups)
        out.add((cin, cout, m.kernel_size, m.stride, m.padding, groups, m.bias is not None))
    return out


@pytest.mark.parametrize("name", FULL)
def test_every_sts_geometry_of_full_size_models(name):
    """Layer by layer (full models are too large to run here): each STS geometry a full-size model has, in every
    static mode and layout, on a one-frame 8x8 clip."""
    g = torch.Generator().manual_seed(0)
    geometries = _conv_geometries(name)
    assert geometries
    for cin, cout, k, stride, pad, groups, bias in sorted(geometries):
        x = torch.randn(1, cin, 1, 8, 8, generator=g, dtype=torch.float64)
        for mode, layout in itertools.product(STATIC_MODES, LAYOUTS):
            try:
                conv = STSConv3d(cin, cout, k, stride, pad, 1, groups, bias, static_mode=mode, layout=layout)
            except UnsupportedConvError:
                continue
            conv = conv.double()
            with torch.no_grad():
                conv.weight.normal_(generator=g)
                expected = conv(x)[:, :, 0]
                got = ImageSTSConv(conv)(x[:, :, 0])
            assert _rel(got, expected) < 1e-5, (name, cin, cout, k, stride, groups, mode, layout)


GEOMETRIES = [
    # (cin, cout, kernel, stride, padding, groups)
    (6, 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1),
    (6, 8, (3, 3, 3), (1, 2, 2), (1, 1, 1), 1),
    (6, 8, (3, 3, 3), (2, 2, 2), (1, 1, 1), 1),
    (6, 9, (3, 3, 3), (1, 1, 1), (1, 0, 0), 1),  # no spatial padding: negative side paddings crop
    (8, 8, (3, 3, 3), (1, 2, 2), (1, 1, 1), 8),  # depthwise
    (8, 12, (3, 3, 3), (1, 1, 1), (1, 1, 1), 4),  # grouped
    (6, 8, (3, 5, 5), (1, 2, 2), (1, 2, 2), 1),
    (8, 8, (3, 5, 5), (1, 1, 1), (1, 2, 2), 8),
    (6, 7, (3, 1, 1), (1, 1, 1), (1, 0, 0), 1),  # odd static split
    (6, 8, (3, 1, 1), (1, 2, 2), (1, 0, 0), 1),
    (8, 8, (3, 1, 1), (2, 1, 1), (1, 0, 0), 4),
]


@pytest.mark.parametrize("ratio", [0.5, "1:2", "2:1", 1.0])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_image_sts_layer_with_bias_groups_strides_and_dilation(geometry, ratio):
    cin, cout, k, stride, pad, groups = geometry
    g = torch.Generator().manual_seed(1)
    for mode, layout, dil, size in itertools.product(STATIC_MODES, LAYOUTS, (2, 3), (7, 8)):
        if dil == 3 and mode != "dilated":
            continue
        try:
            conv = STSConv3d(
                cin,
                cout,
                k,
                stride,
                pad,
                1,
                groups,
                True,
                static_ratio=ratio,
                static_mode=mode,
                static_dilation=dil,
                layout=layout,
            ).double()
        except UnsupportedConvError:
            continue
        if layout == "official" and size % 2:
            continue  # the authors' layout needs even sizes at stride 2 (the 3D layer refuses odd ones)
        with torch.no_grad():
            conv.weight.normal_(generator=g)
            conv.bias.normal_(generator=g)
            x = torch.randn(2, cin, 1, size, size, generator=g, dtype=torch.float64)
            expected = conv(x)[:, :, 0]
            got = ImageSTSConv(conv)(x[:, :, 0])
        assert got.shape == expected.shape
        assert _rel(got, expected) < 1e-5, (geometry, ratio, mode, layout, dil, size)


def test_image_sts_layer_refuses_what_has_no_image_form():
    conv = STSConv3d(4, 4, (3, 3, 3), padding=(0, 1, 1))
    with pytest.raises(VidpriorError, match=r"temporal padding 1"):
        ImageSTSConv(conv)
    with pytest.raises(VidpriorError, match=r"takes images"):
        ImageSTSConv(STSConv3d(4, 4, 3, padding=1))(torch.zeros(1, 4, 1, 5, 5))


@pytest.mark.parametrize("name", ["csn_tiny", "slowonly_tiny"])
def test_pretrain_finetune_round_trip_keeps_every_static_side_tap(name, tmp_path):
    """Train the image view of an STS model a few steps, save it, load it as init.source=image into a fresh STS
    video model: static filters keep the three slices they learned; dynamic filters get their centre slice
    (zero side taps, the paper's zero-init); on a one-frame clip the video model computes what the image model did."""
    torch.manual_seed(0)
    view = image_model(create_model(name, num_classes=4, sts=True)).train()
    before = {k: v.clone() for k, v in view.state_dict().items()}
    opt = torch.optim.SGD(view.parameters(), lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(view(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
    path = tmp_path / "image.safetensors"
    save_file({k: v.contiguous() for k, v in view.state_dict().items()}, str(path))

    video = create_model(name, num_classes=4, sts=True)
    load_initial_weights(video, source="image", path=str(path), mode="center", skip=["nothing"])
    learned = 0
    for n, layer in video.named_modules():
        if not isinstance(layer, STSConv3d) or layer.num_static == 0:
            continue
        w, w_img, s = layer.weight.detach(), view.state_dict()[f"{n}.weight"], layer.num_static
        assert torch.equal(w[:s], w_img[:s]), n  # every static tap, side slices included
        assert torch.equal(w[s:, :, 1], w_img[s:, :, 1]) and not w[s:, :, [0, 2]].any(), n
        learned += int(not torch.equal(w_img[:s, :, [0, 2]], before[f"{n}.weight"][:s, :, [0, 2]]))
    assert learned > 0  # pre-training did change static side taps, and they arrived
    video.eval()
    view.eval()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(video(img.unsqueeze(2)), view(img), rtol=1e-4, atol=1e-5)


def test_cli_pretrain_with_sts_then_finetune_loads_the_static_side_taps(tmp_path):
    """`vidprior pretrain` with model.sts=true trains the STS image view (5-D kernels in its weights, schedule in
    their metadata); `init.source=image` puts every static tap into the video model; side_taps=random with
    scale auto adds the recorded weight-decay shrink of the model's own side taps to the dynamic filters."""
    from safetensors.torch import load_file

    from tests._util import run_cli, write_color_image
    from vidprior.engine.assembly import build_model
    from vidprior.engine.config import load_config
    from vidprior.models.side_taps import read_schedule, weight_decay_shrink

    for split, per_class in (("train", 4), ("val", 1)):
        for c in range(2):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            for k in range(per_class):
                write_color_image(tmp_path / split / f"c{c}" / f"{k}.png", c, seed=k)
    common = ["model.name=csn_tiny", "model.num_classes=2", "model.sts=true", "data.crop_size=32"]
    out = tmp_path / "pre"
    res = run_cli(
        "pretrain",
        *common,
        "data.format=imagefolder",
        f"data.train={tmp_path / 'train'}",
        f"data.val={tmp_path / 'val'}",
        "data.short_side=null",
        "data.randaugment=null",
        "data.workers=0",
        "train.batch_size=4",
        "train.ckpt_every_minutes=null",
        "optim.epochs=2",
        "optim.warmup_epochs=0",
        "optim.weight_decay=0.01",
        f"out={out}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    weights = out / "best.safetensors"
    image = load_file(str(weights))
    key = "backbone.layer1.0.conv2.0.conv.weight"
    assert image[key].dim() == 5  # the STS layer's 3D kernel, trained as ImageSTSConv
    schedule = read_schedule(weights)
    assert schedule["optimizer"] == "sgd" and schedule["steps"] >= 1 and schedule["weight_decay"] == 0.01
    shrink = weight_decay_shrink(schedule)
    assert 0 < shrink < 1

    def finetune(*extra):
        cfg = load_config(
            None,
            [*common, "task=finetune", "data.train=unused", "init.source=image", f"init.checkpoint={weights}", *extra],
        )
        torch.manual_seed(5)
        return build_model(cfg)

    zero = finetune()
    rand = finetune("init.side_taps=random", "init.side_taps_scale=auto")
    torch.manual_seed(5)
    own = create_model("csn_tiny", num_classes=2, sts=True).state_dict()[key]
    layer = zero.get_submodule(key[: -len(".weight")])
    s = layer.num_static
    for model in (zero, rand):
        w = model.state_dict()[key]
        assert torch.equal(w[:s], image[key][:s])  # every static tap pre-training learned
        assert torch.equal(w[s:, :, 1], image[key][s:, :, 1])
    assert not zero.state_dict()[key][s:, :, [0, 2]].any()
    torch.testing.assert_close(rand.state_dict()[key][s:, :, [0, 2]], shrink * own[s:, :, [0, 2]])
