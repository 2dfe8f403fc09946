"""3-D (M-RoPE) position ids for a prompt with videos, as the published weights saw them.

The UniPixel release was trained with transformers 4.53, where the text after a
video continues from the largest position used by the video (temporal positions
included), and the seconds per temporal grid step is cast to an integer before
scaling. Later transformers continue after the spatial extent only, which moves
every text position after a multi-frame video; so the positions are computed
here, and passed to the language model explicitly.
"""
from __future__ import annotations

from typing import Sequence

import torch


def mrope_position_ids(input_ids: torch.Tensor, video_grid_thw: torch.Tensor | None,
                       second_per_grid_ts: Sequence[float] | None, *, video_token_id: int,
                       vision_start_token_id: int, spatial_merge_size: int,
                       tokens_per_second: int) -> tuple[torch.Tensor, int]:
    """Position ids (3, L) for one sequence and the offset of later positions.

    Text tokens get the same position on all three axes; a video's tokens get
    (time, row, column). The offset is what to add to a token's index in the
    sequence to get its position when generating past the prompt.
    """
    tokens = input_ids.tolist()
    length = len(tokens)
    video_starts = [i + 1 for i in range(length - 1)
                    if tokens[i] == vision_start_token_id and tokens[i + 1] == video_token_id]
    grids = [] if video_grid_thw is None else video_grid_thw.tolist()
    if len(video_starts) != len(grids):
        raise ValueError(f"the text has {len(video_starts)} video(s) but {len(grids)} video grid(s) were given")

    pieces: list[torch.Tensor] = []
    next_position = 0
    cursor = 0
    for index, (start, (grid_t, grid_h, grid_w)) in enumerate(zip(video_starts, grids)):
        text_len = start - cursor
        pieces.append(torch.arange(text_len).expand(3, -1) + next_position)
        llm_h, llm_w = grid_h // spatial_merge_size, grid_w // spatial_merge_size
        seconds = 1.0 if second_per_grid_ts is None else float(second_per_grid_ts[index])
        step = int(seconds) * tokens_per_second
        t_index = (torch.arange(grid_t) * step).view(-1, 1, 1).expand(grid_t, llm_h, llm_w)
        h_index = torch.arange(llm_h).view(1, -1, 1).expand(grid_t, llm_h, llm_w)
        w_index = torch.arange(llm_w).view(1, 1, -1).expand(grid_t, llm_h, llm_w)
        video = torch.stack([t_index.flatten(), h_index.flatten(), w_index.flatten()]) + next_position + text_len
        pieces.append(video)
        next_position = int(video.max()) + 1
        cursor = start + grid_t * llm_h * llm_w
    if cursor > length:
        raise ValueError(f"the video grids need {cursor} tokens but the text has only {length}")
    pieces.append(torch.arange(length - cursor).expand(3, -1) + next_position)
    positions = torch.cat(pieces, dim=1).to(input_ids.device)
    offset = int(positions.max()) + 1 - length if length else 0
    return positions, offset
