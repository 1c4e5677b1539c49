import pytest


@pytest.fixture(scope='session')
def model_table():
    """`stepsnet models` rows for every registered Steps model and its baseline, measured once per session."""
    from stepsnet.analysis.complexity import complexity_table
    return complexity_table()


@pytest.fixture
def one_thread():
    """Run a test on one thread: tiny models are faster that way, most of all on a shared, busy machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
