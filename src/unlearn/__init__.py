"""unlearn: a library for reliable machine unlearning.

The library is pure: it never reads params.yaml, argv or MLflow. The `pipeline`
package does the I/O and orchestration around it.
"""

__version__ = "0.1.0"
