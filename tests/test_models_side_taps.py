"""init.side_taps: zero (the paper's zero-init, today's behaviour) or random (the video model's own initialisation
scaled by a number or by the weight-decay shrink of the image checkpoint's recorded schedule)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from timm.optim import create_optimizer_v2

from vidprior import STSConv3d, create_model, image_model
from vidprior.engine.config import OptimCfg
from vidprior.engine.optim import build_scheduler, schedule_metadata
from vidprior.errors import VidpriorError
from vidprior.models.inflate import inflate_state_dict
from vidprior.models.side_taps import SCHEDULE_KEY, learning_rates, read_schedule, weight_decay_shrink
from vidprior.models.weight_sources import load_initial_weights


def _image_checkpoint(tmp_path, name="slowonly_tiny", metadata=None, **kw):
    torch.manual_seed(0)
    view = image_model(create_model(name, num_classes=4, **kw))
    path = tmp_path / "image.safetensors"
    save_file({k: v.contiguous() for k, v in view.state_dict().items()}, str(path), metadata=metadata)
    return view.state_dict(), str(path)


def _fresh(name="slowonly_tiny", seed=1, **kw):
    torch.manual_seed(seed)
    model = create_model(name, num_classes=4, **kw)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _kernels(sd):
    return [k for k, v in sd.items() if v.dim() == 5 and v.shape[2] > 1]


@pytest.mark.parametrize("mode", ["center", "mean", {1: "center", 3: (0.25, 0.5, 0.25)}])
def test_random_side_taps_are_the_models_own_init_scaled(tmp_path, mode):
    image, path = _image_checkpoint(tmp_path)
    model, own = _fresh()
    load_initial_weights(model, source="image", path=path, mode=mode, side_taps="random", side_taps_scale=0.1)
    base, _ = inflate_state_dict(image, model, mode=mode, skip=["cls_*"])
    sd = model.state_dict()
    keys = _kernels(sd)
    assert keys
    for k in keys:
        assert torch.equal(sd[k][:, :, 1], base[k][:, :, 1])  # centre: the inflated image weights
        torch.testing.assert_close(sd[k][:, :, [0, 2]], base[k][:, :, [0, 2]] + 0.1 * own[k][:, :, [0, 2]])
        assert sd[k][:, :, [0, 2]].abs().sum() > 0
    if mode == "center":
        k = keys[0]
        assert torch.equal(sd[k][:, :, 1], image[k])


def test_zero_is_bit_identical_to_plain_inflation(tmp_path):
    image, path = _image_checkpoint(tmp_path)
    model, _ = _fresh()
    load_initial_weights(model, source="image", path=path, mode="center", side_taps="zero")
    reference, _ = _fresh()
    state, _ = inflate_state_dict(image, reference, mode="center", skip=["cls_head.*"])
    reference.load_state_dict(state, strict=False)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize("name", ["slowonly_tiny", "csn_tiny"])
def test_random_side_taps_break_reversal_invariance(tmp_path, name):
    _, path = _image_checkpoint(tmp_path, name)
    clip = torch.randn(2, 3, 4, 32, 32)
    out = {}
    for taps in ("zero", "random"):
        model, _ = _fresh(name)
        load_initial_weights(model, source="image", path=path, side_taps=taps, side_taps_scale=0.5)
        model.eval()
        with torch.no_grad():
            out[taps] = (model(clip), model(clip.flip(2)))
    torch.testing.assert_close(out["zero"][0], out["zero"][1], rtol=1e-4, atol=1e-5)  # zero-init: invariant
    diff = (out["random"][0] - out["random"][1]).abs().max()
    assert diff > 1e-3 * out["random"][0].abs().max()


def test_random_with_sts_keeps_learned_static_taps(tmp_path):
    image, path = _image_checkpoint(tmp_path, "csn_tiny", sts=True)
    model, own = _fresh("csn_tiny", sts=True)
    load_initial_weights(model, source="image", path=path, side_taps="random", side_taps_scale=0.2)
    checked = 0
    for n, layer in model.named_modules():
        if isinstance(layer, STSConv3d) and layer.num_static > 0:
            w, s, key = layer.weight.detach(), layer.num_static, f"{n}.weight"
            assert torch.equal(w[:s], image[key][:s])
            torch.testing.assert_close(w[s:, :, [0, 2]], 0.2 * own[key][s:, :, [0, 2]])
            assert torch.equal(w[s:, :, 1], image[key][s:, :, 1])
            checked += 1
    assert checked


def _replay_real_optimizer(cfg: OptimCfg, steps_per_epoch: int, steps: int) -> float:
    """Run the real optimizer on a tensor whose first half gets gradients and whose second half never does."""
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 8, bias=False)
    kw = {"momentum": cfg.momentum} if cfg.name == "sgd" else {}
    opt = create_optimizer_v2(net, opt={"sgd": "momentum"}.get(cfg.name, cfg.name), lr=cfg.lr,
                              weight_decay=cfg.weight_decay, **kw)  # fmt: skip
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    w0 = net.weight.detach().clone()
    for t in range(steps):
        opt.zero_grad()
        net.weight.grad = torch.zeros_like(net.weight)
        opt.step()
        sched.step_update(t + 1)
    return float((net.weight.detach() / w0).mean())


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb"])
def test_auto_shrink_matches_the_real_optimizer(name):
    cfg = OptimCfg(name=name, lr=0.3 if name != "adamw" else 0.01, weight_decay=0.05, epochs=3, warmup_epochs=1)
    schedule = json.loads(schedule_metadata(cfg, 16, steps_per_epoch=7, steps=17)[SCHEDULE_KEY])
    lrs = learning_rates(schedule)
    assert len(lrs) == 17 and lrs[0] == pytest.approx(cfg.warmup_lr) and max(lrs) <= cfg.lr
    shrink = weight_decay_shrink(schedule)
    assert 0 < shrink < 1
    assert shrink == pytest.approx(_replay_real_optimizer(cfg, 7, 17), rel=1e-5)


def test_auto_reads_the_recorded_schedule_and_refuses_without_one(tmp_path):
    cfg = OptimCfg(name="sgd", lr=0.1, weight_decay=1e-3, epochs=2, warmup_epochs=0)
    meta = schedule_metadata(cfg, 16, steps_per_epoch=5, steps=10)
    image, path = _image_checkpoint(tmp_path, metadata=meta)
    assert read_schedule(path)["steps"] == 10
    expected = weight_decay_shrink(read_schedule(path))
    model, own = _fresh()
    load_initial_weights(model, source="image", path=path, side_taps="random", side_taps_scale="auto")
    k = _kernels(model.state_dict())[0]
    torch.testing.assert_close(model.state_dict()[k][:, :, 0], expected * own[k][:, :, 0])
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in image.items()}, str(bare))
    with pytest.raises(VidpriorError, match=r"bare\.safetensors records no optimizer schedule"):
        load_initial_weights(_fresh()[0], source="image", path=str(bare), side_taps="random")
    with pytest.raises(VidpriorError, match=r"init.side_taps='rand'.*did you mean 'random'"):
        load_initial_weights(_fresh()[0], source="image", path=str(bare), side_taps="rand")


def test_checkpoints_record_the_schedule(tmp_path):
    from vidprior.engine.checkpoint import save_checkpoint

    meta = schedule_metadata(OptimCfg(name="lamb"), 32, steps_per_epoch=4, steps=3)
    folder = save_checkpoint(tmp_path, 3, {"x": 1}, model_state={"w": torch.ones(2)}, metadata=meta)
    schedule = read_schedule(folder / "model.safetensors")
    assert schedule["optimizer"] == "lamb" and schedule["steps"] == 3 and schedule["total_steps"] == 4 * 50
