import nodes


def test_package_imports() -> None:
    assert nodes.__name__ == "nodes"
