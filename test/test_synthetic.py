"""Synthetic scenes and requests: reproducible from a seed, masks exact, ground truth consistent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unipixel_ros.prompts import BoxPrompt, PointPrompt, validate_request
from unipixel_ros.synthetic.requests import (
    RELATIONS,
    RequestKind,
    RequestUnavailable,
    answer_labels,
    answer_matches,
    make_request,
    normalise_answer,
    random_request,
)
from unipixel_ros.synthetic.scenes import (
    PALETTE,
    SHAPES,
    Background,
    Scene,
    SceneError,
    SceneObject,
    SyntheticStream,
    random_scene,
    random_video,
)

FLAT = Background(kind="gradient", colours=((110, 110, 110), (130, 130, 130)))


def make_scene(*objects: SceneObject, width: int = 160, height: int = 120) -> Scene:
    return Scene(width=width, height=height, objects=tuple(objects), background=FLAT, noise_std=0.0)


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


# ----------------------------------------------------------------- reproducibility


def test_same_seed_same_clip_and_other_seed_other_clip() -> None:
    first, again, other = random_video(5, num_frames=4), random_video(5, num_frames=4), random_video(6, num_frames=4)
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.masks, again.masks)
    assert first.scene == again.scene
    assert not np.array_equal(first.images, other.images)


def test_stream_frame_depends_only_on_seed_and_index() -> None:
    walked = SyntheticStream(seed=3, width=96, height=64, episode_frames=10)
    for i in range(25):
        walked.frame(i)
    fresh = SyntheticStream(seed=3, width=96, height=64, episode_frames=10)
    for i in (24, 0, 13):
        a, b = walked.frame(i), fresh.frame(i)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    # A new episode is a new scene; within an episode the scene stays.
    assert fresh.scene_at(3)[0] is fresh.scene_at(7)[0]
    assert fresh.scene_at(3)[0] != fresh.scene_at(13)[0]
    assert fresh.scene_at(13)[1] == 3


def test_stream_index_of_finds_the_frame() -> None:
    stream = SyntheticStream(seed=1, width=64, height=48)
    assert stream.index_of(stream.frame(7).image, range(20)) == 7
    assert stream.index_of(np.zeros((48, 64, 3), np.uint8), range(5)) is None


def test_image_size_is_configurable_and_default_is_320x240() -> None:
    assert random_video(0, num_frames=1).images.shape == (1, 240, 320, 3)
    video = random_video(0, num_frames=2, width=200, height=96)
    assert video.images.shape == (2, 96, 200, 3) and video.images.dtype == np.uint8
    assert video.masks.shape[1:] == (2, 96, 200)
    assert 2 <= video.num_objects <= 5


# ----------------------------------------------------------------- rasterisation


@pytest.mark.parametrize("radius, lattice_points", [(1, 5), (2, 13), (3, 29), (5, 81), (10, 317)])
def test_circle_on_a_pixel_is_the_gauss_circle_count(radius: int, lattice_points: int) -> None:
    """Pixels are sampled at integer coordinates, so a circle centred on a pixel holds exactly
    the integer points (i, j) with i^2 + j^2 <= r^2: the Gauss circle numbers."""
    scene = make_scene(SceneObject("circle", "red", radius, (40.0, 30.0)))
    assert scene.render(0).masks[0].sum() == lattice_points


def test_square_counts_are_exact() -> None:
    # Half side 10 about a pixel: columns 40..60 inclusive (boundary counts) -> 21 x 21.
    on_pixel = make_scene(SceneObject("square", "red", 10, (50.0, 50.0)))
    assert on_pixel.render(0).masks[0].sum() == 21 * 21
    # About a pixel corner: centres 40..59 -> 20 x 20.
    on_corner = make_scene(SceneObject("square", "red", 10, (49.5, 49.5)))
    mask = on_corner.render(0).masks[0]
    assert mask.sum() == 400
    assert np.array_equal(np.nonzero(mask.any(axis=0))[0], np.arange(40, 60))


@pytest.mark.parametrize("shape", SHAPES)
def test_pixel_count_is_the_area_within_the_boundary_band(shape: str) -> None:
    """A pixel counts when its centre is inside, so only pixels whose unit square crosses
    the outline can be counted wrongly; they lie within d = sqrt(2)/2 of it. For a convex
    shape of area A and perimeter P: A - P*d <= count <= A + P*d + pi*d^2 (Steiner)."""
    rng = np.random.default_rng(11)
    d = math.sqrt(2) / 2
    for _ in range(5):
        size = float(rng.uniform(8, 20))
        angle = float(rng.uniform(-0.5, 0.5))
        center = (float(rng.uniform(45, 55)), float(rng.uniform(45, 55)))
        obj = SceneObject(shape, "blue", size, center, angle=angle)
        count = make_scene(obj).render(0).masks[0].sum()
        if shape == "circle":
            area, perimeter = math.pi * size**2, 2 * math.pi * size
        else:
            verts = obj.outline()
            x, y = verts[:, 0], verts[:, 1]
            area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
            perimeter = float(np.linalg.norm(verts - np.roll(verts, -1, axis=0), axis=1).sum())
        assert area - perimeter * d <= count <= area + perimeter * d + math.pi * d * d, (shape, size, count, area)


def test_image_pixels_under_a_mask_have_the_object_colour() -> None:
    scene = random_scene(4, width=160, height=120, num_objects=5)
    scene = Scene(scene.width, scene.height, scene.objects, scene.background, noise_std=0.0)
    frame = scene.render(2)
    for k, obj in enumerate(scene.objects):
        assert frame.masks[k].any()
        assert np.all(frame.image[frame.masks[k]] == PALETTE[obj.colour])
    background = ~frame.masks.any(axis=0)
    palette = np.array(list(PALETTE.values()))
    # The muted background is never a palette colour.
    assert not (frame.image[background][:, None, :] == palette[None]).all(axis=2).any()


def test_boxes_are_tight_inclusive_boxes_of_the_masks() -> None:
    frame = random_scene(8, num_objects=4).render(0)
    for mask, box in zip(frame.masks, frame.boxes):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


# ----------------------------------------------------------------- occlusion


def test_front_object_removes_exactly_its_overlap_from_the_back_object() -> None:
    back = SceneObject("circle", "red", 12, (50.0, 50.0))
    front = SceneObject("square", "blue", 10, (62.0, 50.0))
    frame = make_scene(back, front).render(0)
    alone = make_scene(back).render(0).masks[0]
    front_full = make_scene(front).render(0).masks[0]
    overlap = alone & front_full
    assert overlap.sum() > 0
    assert np.array_equal(frame.masks[0], alone & ~front_full)
    assert frame.masks[0].sum() == alone.sum() - overlap.sum()
    assert np.array_equal(frame.masks[1], front_full)
    assert np.all(frame.image[overlap] == PALETTE["blue"])


def test_masks_are_disjoint_and_cover_every_shape_pixel() -> None:
    video = random_video(2, num_frames=6, occlusion=True)
    scene = video.scene
    assert (video.masks.sum(axis=0) <= 1).all()
    for t in range(video.num_frames):
        full = np.stack([scene.full_mask(k, t) for k in range(video.num_objects)])
        assert np.array_equal(video.masks[:, t].any(axis=0), full.any(axis=0))
        assert not (video.masks[:, t] & ~full).any()


def test_occlusion_option_makes_one_shape_hide_part_of_another() -> None:
    for seed in range(5):
        video = random_video(seed, num_frames=6, occlusion=True)
        full = np.stack([[video.scene.full_mask(k, t) for t in range(6)] for k in range(video.num_objects)])
        assert (full.sum(axis=0) > 1).any(), seed


# ----------------------------------------------------------------- motion


def test_integer_velocity_shifts_the_mask_exactly() -> None:
    obj = SceneObject("triangle", "green", 12, (60.0, 60.0), velocity=(3.0, -2.0), angle=0.2)
    scene = make_scene(obj)
    m0, m2 = scene.render(0).masks[0], scene.render(2).masks[0]
    assert np.array_equal(np.roll(m0, shift=(-4, 6), axis=(0, 1)), m2)
    assert np.allclose(centroid(m2) - centroid(m0), (6.0, -4.0))


def test_clip_motion_is_linear_with_the_velocity() -> None:
    video = random_video(9, num_frames=8)
    for k, obj in enumerate(video.scene.objects):
        expected = np.asarray(obj.position) + np.arange(8)[:, None] * np.asarray(obj.velocity)
        assert np.allclose(video.centers[k], expected)


def test_shapes_bounce_off_the_border_and_stay_whole() -> None:
    # Centre range for a radius-10 circle in a 160-wide image: [10, 149].
    obj = SceneObject("circle", "red", 10, (140.0, 60.0), velocity=(5.0, 0.0))
    scene = make_scene(obj)
    assert scene.center(0, 3) == (143.0, 60.0)  # 155 reflected at 149
    assert scene.center(0, 4) == (138.0, 60.0)  # 160 reflected at 149
    assert scene.render(4).masks[0].sum() == 317


def test_invalid_scenes_raise_value_errors_that_name_the_problem() -> None:
    with pytest.raises(SceneError, match="unknown colour 'teal'"):
        SceneObject("circle", "teal", 5, (20.0, 20.0))
    with pytest.raises(SceneError, match="does not fit"):
        make_scene(SceneObject("circle", "red", 10, (5.0, 20.0)))
    with pytest.raises(ValueError):
        SyntheticStream(seed=0).frame(-1)


# ----------------------------------------------------------------- requests


def draw(kind: RequestKind, count: int, seed: int = 0, **kwargs):
    rng = np.random.default_rng(seed)
    return [random_request(rng, kind, width=160, height=120, **kwargs) for _ in range(count)]


def check_prompts(request) -> None:
    video = request.video
    validate_request(request.text, request.prompts, video.num_frames, video.scene.width, video.scene.height)
    for prompt in request.prompts:
        mask = video.masks[request.object_ids[prompt.object_index], prompt.frame_index]
        if isinstance(prompt, PointPrompt):
            assert mask[int(prompt.y), int(prompt.x)]
        else:
            ys, xs = np.nonzero(mask)
            assert (prompt.x0, prompt.y0, prompt.x1, prompt.y1) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_every_request_kind_is_generated_and_valid() -> None:
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(30):
        request = random_request(rng, width=160, height=120)
        seen.add(request.kind)
        check_prompts(request)
        assert request.masks.shape == (len(request.object_ids), request.video.num_frames, 120, 160)
        assert request.masks.any(axis=(1, 2, 3)).all()
    assert seen == set(RequestKind)


def test_requests_are_reproducible_from_the_seed() -> None:
    a, b = random_request(21), random_request(21)
    assert (a.kind, a.text, a.prompts, a.object_ids, a.answer) == (b.kind, b.text, b.prompts, b.object_ids, b.answer)


def pixel_colour(request, obj: int) -> str:
    """The palette colour nearest the mean image colour under the object's masks."""
    video = request.video
    mean = video.images[video.masks[obj]].mean(axis=0)
    return min(PALETTE, key=lambda name: np.linalg.norm(mean - np.array(PALETTE[name])))


@pytest.mark.parametrize("kind, prompt_type", [(RequestKind.POINT_QUESTION, PointPrompt),
                                               (RequestKind.BOX_QUESTION, BoxPrompt)])
def test_prompt_questions_answer_what_the_pixels_show(kind: RequestKind, prompt_type: type) -> None:
    for request in draw(kind, 12):
        assert [type(p) for p in request.prompts] == [prompt_type]
        check_prompts(request)
        obj = request.object_ids[0]
        if "colour" in request.text:
            assert request.answer == pixel_colour(request, obj)
        else:
            assert answer_labels(request.answer, {"shape"}) == [request.video.scene.objects[obj].shape]


def test_text_referring_names_exactly_one_object() -> None:
    relations = 0
    for request in draw(RequestKind.TEXT_REFERRING, 30, seed=3):
        video, (target,) = request.video, request.object_ids
        assert request.prompts == () and request.answer is None
        assert request.expression in request.text and video.visible[target, 0]
        relation = next((r for r, phrase in RELATIONS.items() if f" {phrase} " in request.expression), None)
        if relation is None:
            # "the red circle", "the red shape" or "the circle": every attribute word must fit.
            words = set(request.expression.split()[1:]) - {"shape"}
            matches = [k for k, o in enumerate(video.scene.objects) if words <= {o.colour, o.shape}]
            assert matches == [target], request.expression
            continue
        relations += 1
        anchor_name = request.expression.split(RELATIONS[relation] + " the ")[1]
        (anchor,) = [k for k, o in enumerate(video.scene.objects) if o.name == anchor_name]
        for t in range(video.num_frames):
            for k in range(video.num_objects):
                if k == anchor:
                    continue
                ys, xs = np.nonzero(video.masks[k, t])
                ays, axs = np.nonzero(video.masks[anchor, t])
                holds = xs.size > 0 and {
                    "left": xs.max() < axs.min(), "right": xs.min() > axs.max(),
                    "above": ys.max() < ays.min(), "below": ys.min() > ays.max(),
                }[relation]
                assert holds == (k == target), (request.text, t, k)
    assert relations > 0


def test_multi_object_requests_carry_every_object() -> None:
    for request in draw(RequestKind.MULTI_OBJECT, 12, seed=4):
        assert 2 <= len(request.object_ids) <= 3 and len(set(request.object_ids)) == len(request.object_ids)
        check_prompts(request)
        objects = [request.video.scene.objects[k] for k in request.object_ids]
        if request.prompts:
            assert [p.object_index for p in request.prompts] == list(range(len(objects)))
            if "colours" in request.text:
                assert answer_labels(request.answer) == [pixel_colour(request, k) for k in request.object_ids]
            else:
                assert answer_labels(request.answer) == [o.shape for o in objects]
        else:
            assert all(o.name in request.text for o in objects)


def test_pixel_qa_answers_follow_from_the_masks_over_the_clip() -> None:
    questions = set()
    for request in draw(RequestKind.PIXEL_QA, 40, seed=5):
        video, (obj,) = request.video, request.object_ids
        check_prompts(request)
        scene, masks = video.scene, video.masks
        full = np.stack([scene.full_mask(obj, t) for t in range(video.num_frames)])
        if "hidden" in request.text:
            questions.add("hidden")
            hidden = (full & ~masks[obj]).any()
            assert request.answer == ("yes" if hidden else "no")
        elif "covers" in request.text:
            questions.add("covers")
            (coverer,) = [k for k, o in enumerate(scene.objects) if f"the {o.name}" == request.answer]
            assert (full & masks[coverer]).any()
            others = [k for k in range(video.num_objects) if k not in (obj, coverer)]
            assert not (full[None] & masks[others]).any()
        elif "direction" in request.text:
            questions.add("direction")
            dx, dy = centroid(full[-1]) - centroid(full[0])
            expected = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert request.answer == expected
        else:
            questions.add("closest")
            here = centroid(full[-1])
            dist = {k: np.linalg.norm(centroid(scene.full_mask(k, video.num_frames - 1)) - here)
                    for k in range(video.num_objects) if k != obj and masks[k, -1].any()}
            nearest = min(dist, key=dist.get)
            assert request.answer == f"the {scene.objects[nearest].name}"
    assert questions == {"hidden", "covers", "direction", "closest"}


def test_unsupported_request_raises_request_unavailable() -> None:
    lone = Scene(160, 120, (SceneObject("circle", "red", 10, (40.0, 40.0)),), FLAT, noise_std=0.0)
    with pytest.raises(RequestUnavailable):
        make_request(RequestKind.MULTI_OBJECT, lone.video(1), 0)
    assert issubclass(RequestUnavailable, ValueError)


# ----------------------------------------------------------------- answers


@pytest.mark.parametrize("predicted, expected, same", [
    ("It is a red circle.", "circle", True),
    ("It is a red circle.", "square", False),
    ("Violet.", "purple", True),
    ("The shape moves leftwards", "left", True),
    ("[0] is green and [1] is yellow.", "green, yellow", True),
    ("[0] is yellow and [1] is green.", "green, yellow", False),
    ("Yes, it is.", "no", False),
    ("The Blue Squares!", "the blue square", True),
])
def test_answer_matching(predicted: str, expected: str, same: bool) -> None:
    assert answer_matches(predicted, expected) is same


def test_normalise_answer_and_label_free_expected_answer() -> None:
    assert normalise_answer("  The  RED, circles!") == "red circle"
    with pytest.raises(ValueError, match="names no colour"):
        answer_matches("red", "maybe")
