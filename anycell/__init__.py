"""anycell: the shared vocabulary of a general-purpose manufacturing cell.

The cell config (:mod:`anycell.cell`), the job spec (:mod:`anycell.job`), the
errors every layer raises (:mod:`anycell.errors`) and loading with positions
(:mod:`anycell.documents`, :mod:`anycell.typed`). No ROS here.
"""

from .cell import CellConfig, load_cell
from .errors import AnycellError
from .job import JobSpec, load_job

__version__ = "0.1.0"
__all__ = ["AnycellError", "CellConfig", "JobSpec", "load_cell", "load_job", "__version__"]
