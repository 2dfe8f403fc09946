"""Synthetic scenes and requests with exact ground truth, generated from a seed (no data files).

``scenes``: shapes moving over textured backgrounds (images, clips, an endless stream);
``requests``: every kind of request the node serves, with expected masks and answers;
``preview``: a picture of clips with their mask outlines.
"""
from .requests import RequestKind, SyntheticRequest, answer_matches, make_request, random_request
from .scenes import Scene, SceneObject, SyntheticStream, Video, random_scene, random_video

__all__ = [
    "RequestKind", "Scene", "SceneObject", "SyntheticRequest", "SyntheticStream", "Video",
    "answer_matches", "make_request", "random_request", "random_scene", "random_video",
]
