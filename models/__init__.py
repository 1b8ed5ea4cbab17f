"""splitedge.models: the networks both sides load, and the contracts they share.

Nothing is imported here (torch and torchvision load only with the module that needs
them). Public API, by module:

- :mod:`~splitedge.models.registry`: ``create_model(name, **options)``,
  ``list_models()``, ``register_model``, ``UnknownModelError`` (names people type:
  ``echo``, ``zoo:<entry>``, torchvision families).
- :mod:`~splitedge.models.types`: ``SplitModel`` (the protocol every model meets),
  ``BranchSpec``, ``TensorSpec``, ``Detections``, ``SegmentationMask``: plain data the
  device and the edge exchange.
- :mod:`~splitedge.models.split`, :mod:`~splitedge.models.torchvision_split`,
  :mod:`~splitedge.models.detection`, :mod:`~splitedge.models.segmentation`: a
  torchvision model cut into a device head and a server tail
  (``TorchvisionSplitModel``).
- :mod:`~splitedge.models.bottleneck`, :mod:`~splitedge.models.bottleneck_split`,
  :mod:`~splitedge.models.bottleneck_seg`, :mod:`~splitedge.models.slimmable`: learned,
  slimmable bottlenecks (HND/GHND students).
- :mod:`~splitedge.models.zoo`: trained entries (builder, checkpoint, recipe, metrics)
  under ``models/zoo/``; :mod:`~splitedge.models.weights`: loading user or
  torchvision weights; :mod:`~splitedge.models.fingerprint`: ``head_fingerprints``,
  the SHA-256 of each split branch's head weights (stated by the edge, checked by
  the device).
- :mod:`~splitedge.models.prefilter`: the on-device frame prefilter.
- :mod:`splitedge.models.data`: procedural datasets (COCO format) and COCO evaluation;
  :mod:`splitedge.models.depth`: HybridDepth's maths (depth from focus, fusion).

Training lives in :mod:`splitedge.training`, never imported from here.
"""
