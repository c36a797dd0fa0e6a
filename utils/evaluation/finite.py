"""A NaN is an error, never a score: the check every pass of a network over data goes through."""
import numpy as np

from utils.errors import NonFiniteError


def count_non_finite(array):
    """Rows (first axis) of `array` holding any NaN or infinity."""
    array = np.asarray(array)
    if array.ndim == 0:
        return int(not np.isfinite(array))
    return int(np.count_nonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1)))


def require_finite(values, where):
    """Raise NonFiniteError naming `where` (e.g. 'E_1a validation, epoch 3') and the count of bad
    rows of each named array of `values` that has any."""
    bad = {name: (count_non_finite(array), len(np.asarray(array))) for name, array in values.items()}
    bad = {name: counts for name, counts in bad.items() if counts[0]}
    if bad:
        listed = ", ".join(f"{count} of {total} {name}" for name, (count, total) in bad.items())
        raise NonFiniteError(f"{where}: {listed} are not finite (NaN or infinite); the network's weights "
                             f"have diverged. Nothing was scored: resume from an earlier checkpoint with a "
                             f"lower learning rate")
