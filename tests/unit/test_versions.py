from pytest_xfperf.versions import library_versions, version_changes


def test_version_changes_are_readable():
    assert version_changes({"onnxruntime": "1.31.1", "torch": "2.13.0"},
                           {"onnxruntime": "1.32.0", "torch": "2.13.0", "onnx": "1.23"}) == [
        "onnx - -> 1.23", "onnxruntime 1.31.1 -> 1.32.0"]


def test_library_versions_come_from_metadata():
    versions = library_versions()
    assert versions["python"].count(".") == 2 and "pytest-xfperf" in versions
