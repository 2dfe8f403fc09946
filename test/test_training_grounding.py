"""The grounding aids of text referring: which tokens a target lies on, their places, the last
layer's attention and the terms built from them.

About 30 s on one thread.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unipixel_ros.sampling import PATCH_SIZE
from unipixel_ros.synthetic import RequestKind, random_request
from unipixel_ros.training.formatting import text_referring_example
from unipixel_ros.training.grounding import (GroundingError, cell_centres, cell_coverage, last_layer_view,
                                            point_seed, pointing_loss, target_cells)
from unipixel_ros.training.recipe import DEFAULT_RECIPE, build_untrained_model
from unipixel_ros.training.trainer import Trainer, chat_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")
W, H = 96, 72


@pytest.fixture(scope="module")
def model_and_processor():
    return build_untrained_model(seed=0)


def _text_example(processor, seed: int = 3):
    rng = np.random.default_rng(seed)
    request = random_request(rng, RequestKind.TEXT_REFERRING, num_frames=1, width=W, height=H)
    return text_referring_example(processor, request)


def test_coverage_counts_each_merged_cell_in_row_order() -> None:
    grid = (4, 6)  # patches: 2 x 3 merged cells of 28 pixels
    mask = np.zeros((grid[0] * PATCH_SIZE, grid[1] * PATCH_SIZE), dtype=bool)
    mask[:28, 28:56] = True          # all of cell (0, 1)
    mask[28:42, 56:84] = True        # half of cell (1, 2)
    coverage = cell_coverage(mask, grid)
    assert coverage.shape == (6,)
    assert coverage[1] == pytest.approx(1.0, abs=1e-3) and coverage[5] == pytest.approx(0.5, abs=0.02)
    assert float(coverage[[0, 2, 3, 4]].abs().max()) < 1e-3
    assert target_cells(mask, grid).tolist() == [False, True, False, False, False, True]
    with pytest.raises(GroundingError):
        target_cells(np.zeros_like(mask), grid)


def test_cell_centres_run_row_by_row_in_frame_pixels() -> None:
    centres = cell_centres((4, 6), width=120, height=60)     # 2 x 3 cells of 40 x 30 pixels
    assert centres.shape == (6, 2)
    assert np.allclose(centres[0], [19.5, 14.5]) and np.allclose(centres[2], [99.5, 14.5])   # x runs fastest
    assert np.allclose(centres[3], [19.5, 44.5])


def test_the_point_seed_is_sams_click_token_at_the_deepest_pixel(model_and_processor) -> None:
    model, processor = model_and_processor
    trainer = Trainer(model, processor, seed=0, progress=False)
    mask = np.zeros((H, W), dtype=bool)
    mask[10:31, 20:61] = True                    # deepest pixels on the middle row, x 30-50
    with torch.no_grad():
        seed = point_seed(trainer.engine, mask)
        inside, _ = trainer.engine.click_prompt(W, H, points=[(40.0, 20.0)], labels=[1])
        corner, _ = trainer.engine.click_prompt(W, H, points=[(20.0, 10.0)], labels=[1])
    assert seed.shape == (2, model.sam2.sam_prompt_embed_dim) and torch.equal(seed[0], seed[1])
    assert float((seed[0] - inside[0, 0]).norm()) < float((seed[0] - corner[0, 0]).norm())
    with pytest.raises(GroundingError):
        point_seed(trainer.engine, np.zeros_like(mask))


def test_the_last_layer_view_is_the_same_pass_with_its_attention(model_and_processor) -> None:
    model, processor = model_and_processor
    example = _text_example(processor)
    language_model = model.model.language_model
    before = language_model.config._attn_implementation
    with torch.no_grad():
        plain = chat_forward(model, example)
        with last_layer_view(language_model) as views:
            viewed = chat_forward(model, example)
    assert language_model.config._attn_implementation == before
    assert torch.allclose(plain.lm_loss, viewed.lm_loss, atol=1e-5)
    assert torch.allclose(plain.seg_tokens, viewed.seg_tokens, atol=1e-5)
    (view,) = views
    length = example.inputs.input_ids.shape[1]
    heads = model.config.text_config.num_attention_heads
    assert view.attention.shape == (heads, length, length)
    assert view.states.shape == (length, model.config.text_config.hidden_size)
    assert torch.allclose(view.attention.sum(-1), torch.ones(heads, length), atol=1e-4)
    assert float(torch.triu(view.attention, diagonal=1).abs().max()) == 0.0   # causal


def test_pointing_is_zero_on_the_target_and_log_share_when_spread() -> None:
    heads, length = 2, 10
    vision = torch.arange(2, 8)                # six vision tokens
    cells = torch.tensor([False, True, True, False, False, False])
    attention = torch.zeros(heads, length, length)
    attention[0, 9, 3:5] = 0.5                  # all on vision tokens 1 and 2
    assert float(pointing_loss(attention, torch.tensor([9]), vision, [cells])) == pytest.approx(0.0, abs=1e-5)
    attention[0, 9] = 1.0 / length
    assert float(pointing_loss(attention, torch.tensor([9]), vision, [cells])) == pytest.approx(np.log(5.0), rel=1e-4)
    with pytest.raises(GroundingError):
        pointing_loss(attention, torch.tensor([8, 9]), vision, [cells])


def test_the_grounding_terms_fit_one_text_request(model_and_processor) -> None:
    """Overfitting one request: the terms fall when only the language model and seg head learn,
    so each reaches the parameters it is meant to train."""
    model, processor = model_and_processor
    example = _text_example(processor, seed=5)
    trainer = Trainer(model, processor, seed=0, progress=False)
    stage = DEFAULT_RECIPE.only(["align"]).stages[0]
    assert stage.grounding
    trainer.grounding = True
    trained = [p for n, p in model.named_parameters() if n.startswith(("model.language_model.", "seg_head."))]
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained + list(trainer.place_probe.parameters()):
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trained + list(trainer.place_probe.parameters()), lr=3e-3)
    try:
        history = []
        for _ in range(40):
            with last_layer_view(model.model.language_model) as views:
                out = chat_forward(model, example)
            terms = trainer.grounding_terms(example, out, views[-1])
            history.append({k: float(v.detach()) for k, v in terms.items()})
            optimizer.zero_grad()
            sum(terms.values()).backward()
            optimizer.step()
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(state[n])
                p.requires_grad_(flags[n])
    first, last = history[0], history[-1]
    assert set(first) == {"place", "pointing", "seeding"}
    for key in first:
        assert last[key] < 0.5 * first[key], (key, first[key], last[key])


@pytest.mark.parametrize("axis, cells", [(1, 10), (2, 14)])   # rows, columns of a 320 x 240 frame's tokens
def test_the_language_models_positions_tell_rows_and_columns_apart(model_and_processor, axis, cells) -> None:
    """Across a camera frame's merged tokens, M-RoPE turns some key dimension by at least half a
    radian along each axis. At Qwen2.5-VL's usual base (1e4) the rows got 0.9 rad and the columns
    0.04 rad, and the image tokens' states held their row but not their column."""
    model, _ = model_and_processor
    rotary = model.model.language_model.rotary_emb
    positions = torch.zeros(3, 1, cells, dtype=torch.long)
    positions[axis, 0] = torch.arange(cells)
    cos, _ = rotary(torch.zeros(1, cells, 1), positions)
    assert float(cos[0, -1].min()) <= float(np.cos(0.5))
    assert float(cos[0, 0].min()) == pytest.approx(1.0)


def test_a_stage_cannot_ground_while_sam_trains(model_and_processor) -> None:
    """The terms' targets are SAM 2's prompt tokens, kept per grid: they hold only while SAM 2 is frozen."""
    import dataclasses

    from unipixel_ros.training.trainer import TrainingError

    model, processor = model_and_processor
    align = DEFAULT_RECIPE.only(["align"]).stages[0]
    trainer = Trainer(model, processor, seed=0, progress=False)
    with pytest.raises(TrainingError, match="SAM 2 frozen"):
        trainer.run_stage(dataclasses.replace(align, steps=1, groups=(*align.groups, "sam2"), sam_lr_scale=1.0))
