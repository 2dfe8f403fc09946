"""The long-track evaluation's parts: where it clicks, what counts as held, the table."""
from __future__ import annotations

import pytest

import argparse

from unipixel_ros.training.tracking_eval import Track, by_colour, channel_order, main


def test_held_means_every_tracked_frame_at_half_iou() -> None:
    assert Track(0, "red", "circle", 0.9, (0.9, 0.5, 0.7)).held
    lost = Track(0, "red", "circle", 0.9, (0.9, 0.49, 0.9))
    assert not lost.held and lost.first_lost == 2
    assert Track(0, "red", "circle", 0.9, (0.9, 0.6)).first_lost is None


def test_the_table_is_per_colour_in_palette_order() -> None:
    tracks = [Track(0, "blue", "square", 0.8, (0.2, 0.0)), Track(1, "red", "circle", 0.6, (0.9, 0.7)),
              Track(2, "blue", "circle", 0.6, (0.8, 0.6))]
    table = by_colour(tracks)
    assert list(table) == ["red", "blue"]
    assert table["blue"]["shapes"] == 2 and table["blue"]["held"] == 1
    assert table["blue"]["clicked_iou"] == pytest.approx(0.7)
    assert table["blue"]["tracked_iou"] == pytest.approx((0.1 + 0.7) / 2)
    assert table["red"]["held"] == 1


def test_a_channel_order_is_a_permutation() -> None:
    assert channel_order("2,1,0") == (2, 1, 0)
    for bad in ("0,1", "0,0,1", "r,g,b", "0,1,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            channel_order(bad)


def test_the_command_prints_a_row_per_colour(capsys) -> None:
    assert main(["--model", "tiny", "--seeds", "1", "--frames", "1", "--threads", "1", "--channels", "0,2,1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["colour", "shapes", "clicked", "IoU", "tracked", "IoU", "held"]
    assert "held " in out.splitlines()[-1]
