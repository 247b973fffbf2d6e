"""tl_keras: domain- and task-specific transfer learning for medical segmentation."""
__version__ = "0.1.0"
