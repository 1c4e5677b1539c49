import pytest


@pytest.fixture(scope='session')
def model_table():
    """`stepsnet models` rows for every registered Steps model and its baseline, measured once per session."""
    from stepsnet.analysis.complexity import complexity_table
    return complexity_table()
