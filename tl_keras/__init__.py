"""tl_keras: domain- and task-specific transfer learning for medical segmentation."""
from tl_common.runinfo import TOOL_VERSION as __version__  # noqa: F401 - the public version
