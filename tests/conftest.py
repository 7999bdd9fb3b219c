import os

import pytest


@pytest.fixture(scope="session")
def nats_url():
    return os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
