"""splitedge.training: offline work on the models, out of the runtime rooms.

Training recipes, teachers, distillation, evaluation and on-device profiling: what
makes and measures the zoo's checkpoints and the scheduler's profiles. The device
runtime (``splitedge.mobile_client``), the edge server (``splitedge.edge``) and the
networks (``splitedge.models``) never import this package at module level;
``tests/test_layering.py`` holds them to it. The one door in is the device CLI's
``profile`` command, which imports :mod:`splitedge.training.profiling` when it runs.

Public API, by module (nothing is imported here, so that importing one recipe does
not load the others' dependencies):

- :mod:`~splitedge.training.train_cli`: ``splitedge-train`` (:func:`main`,
  :func:`build_parser`); each recipe module below registers its sub-command
  through ``add_parser(subparsers)`` and runs it with ``run(args)``.
- :mod:`~splitedge.training.train_teacher`: ``teacher-detector`` /
  ``teacher-segmenter``: :class:`TeacherConfig`, :class:`TeacherResult`,
  :func:`train_teacher`.
- :mod:`~splitedge.training.distill`: ``hnd`` / ``ghnd`` (head network
  distillation of a detector's bottleneck student): :class:`StudentConfig`,
  :class:`DistillConfig`, :class:`DistillConfigError`, :func:`distill`,
  :func:`train_student`, :func:`teacher_detection_loss`, :func:`recipe_line`.
- :mod:`~splitedge.training.distill_seg`: ``ghnd-seg`` (the segmenter's student):
  :class:`SegDistillConfig`, :func:`distill_seg`, :func:`teacher_segmentation_loss`.
- :mod:`~splitedge.training.prefilter_train`: ``prefilter``:
  :class:`PrefilterRecipe`, :func:`train_prefilter`, :func:`uplink_saving`.
- :mod:`~splitedge.training.depth_prior`: ``depth-prior`` (the monocular depth
  prior's recipe): :class:`TrainConfig`, :class:`TrainResult`, :func:`train_prior`,
  ``RECIPE``, ``TINY_RECIPE``.
- :mod:`~splitedge.training.eval_zoo`: ``eval NAME`` (re-measure a zoo entry):
  :func:`evaluate_entry`.
- :mod:`~splitedge.training.teacher_data`: the fixed-seed synthetic training and
  validation data and metrics: :func:`training_batch`, :func:`validation_set`,
  :func:`detection_metrics`, :func:`segmentation_metrics`, :func:`scene_of`,
  ``VAL_DATA_SEED``.
- :mod:`~splitedge.training.profiling`: measuring a branch profile on this device
  (``splitedge-client profile``): :func:`measure_profile`, :func:`cpu_contention`,
  :func:`run_profile`.
- :mod:`~splitedge.training.branch_accuracy`: per-branch accuracy on synthetic
  validation video (COCO mAP, per content bin): :func:`make_video_validator`,
  :class:`VideoValidator`, :class:`BranchAccuracyError`.
"""
