"""Models: the MViT backbone, the RoI action head, the action model, pytorchvideo's AVA models and the zoo.

Nothing is imported here so that ``import detection.models`` stays light; import the module you need:
``detection.models.action_model`` (ActionModel, build_action_model), ``detection.models.roi_head``
(RoIActionHead), ``detection.models.pytorchvideo_ava`` (pytorchvideo's AVA-trained detectors),
``detection.models.zoo`` (named models with their metadata, checkpoints, conversion).
"""
