"""The entry points hide the FutureWarnings RecBole's own code raises, and nothing else."""
import warnings

from recbole_lru.compat import quiet_recbole_warnings


def _shown(module: str, category) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        quiet_recbole_warnings()
        warnings.warn_explicit("notice", category, filename="x.py", lineno=1, module=module)
    return bool(caught)


def test_recbole_future_warnings_hidden():
    assert not _shown("recbole.trainer.trainer", FutureWarning)
    assert not _shown("recbole.data.dataset.dataset", FutureWarning)


def test_other_warnings_still_shown():
    assert _shown("recbole_lru.models.lrurec", FutureWarning)
    assert _shown("pandas.core.frame", FutureWarning)
    assert _shown("recbole.trainer.trainer", UserWarning)
