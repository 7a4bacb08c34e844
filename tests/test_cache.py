"""The kernel disk cache (the estimators' ``memory``): integrity, trust, failures.

Every cached result is compared with the same model fitted without a cache,
and the cache files' bytes are compared before and after reuse.
"""

import builtins
import errno
import hashlib
import os
import pickle
import stat
import warnings

import joblib
import numpy as np
import pytest
from joblib import Memory
from numpy.testing import assert_allclose

import sknetk._cache as cache_module
from sknetk import NTKClassifier, NTKRegressor
from sknetk._cache import cached_kernel, folder_risk
from sknetk.kernels import ntk_kernel

POSIX = os.name == "posix"
ROOT = POSIX and os.geteuid() == 0
MODES = [None, "r", "r+", "w+", "c"]
NETWORK = dict(depth=2, bias_std=0.1)


class SubclassedMemory(Memory):
    """A Memory subclass: sknetk uses it as it is, with joblib's loading."""


def _data(n=24, n_test=7, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + n_test, d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n + n_test)
    return X[:n], y[:n], X[n:]


def _digests(folder):
    """{path: sha256} of every file joblib stored under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".pkl"):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def _outputs(memory, X, y, X_test):
    """Everything that consumes a cached kernel, in place or not."""
    reg = NTKRegressor(alpha=1e-3, memory=memory, **NETWORK).fit(X, y)
    flow = NTKRegressor(
        alpha=1e-3, t=20.0, frozen_layers=1, memory=memory, **NETWORK
    ).fit(X, y)
    gp = NTKRegressor(kernel="nngp", alpha=1e-2, t=10.0, memory=memory, **NETWORK).fit(
        X, y
    )
    clf = NTKClassifier(alpha=1e-3, memory=memory, **NETWORK).fit(X, y > 0)
    return [
        reg.dual_coef_,
        reg.predict(X_test),
        *reg.predict(X_test, return_std=True),
        *reg.predict(X_test, return_cov=True),
        flow.predict(X_test),
        *flow.predict(X_test, return_cov=True),
        flow.predict_trajectory(X_test, [1.0, 100.0]),
        *gp.predict(X_test, return_std=True),
        *gp.predict(X_test, return_std=True),  # the noise went in place here
        clf.decision_function(X_test),
    ]


def _count_computations(monkeypatch):
    """Record the kernels computed through ``sknetk._cache``."""
    calls = []
    for name in ("ntk_kernel", "nngp_kernel", "nngp_ntk_kernels"):
        original = getattr(cache_module, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cache_module, name, wrapper)
    return calls


# ---------------------------------------------------------------------------
# A cached kernel is never modified
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["Memory", "subclass", "compressed"])
@pytest.mark.parametrize("mmap_mode", MODES)
def test_reuse_never_modifies_the_cache(tmp_path, kind, mmap_mode):
    """Any mmap_mode: repeated fits and predictions equal the uncached model.

    Each round uses a new Memory on the same folder, as a later process
    would; the stored files keep their bytes.
    """
    X, y, X_test = _data()
    expected = _outputs(None, X, y, X_test)
    folder = str(tmp_path / "cache")

    def memory():
        if kind == "subclass":
            return SubclassedMemory(folder, mmap_mode=mmap_mode, verbose=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # compressed files are not mapped
            return Memory(
                folder,
                mmap_mode=mmap_mode,
                verbose=0,
                compress=3 if kind == "compressed" else False,
            )

    stored = None
    for _ in range(3):
        got = _outputs(memory(), X, y, X_test)
        for a, b in zip(got, expected):
            assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        if stored is None:
            stored = _digests(folder)
            assert len(stored) >= 6  # NTK, frozen NTK and NNGP: train and test
        assert _digests(folder) == stored


@pytest.mark.parametrize("kind", ["path", "Memory", "subclass"])
@pytest.mark.parametrize("mmap_mode", MODES)
def test_cached_kernels_are_read_only(tmp_path, kind, mmap_mode):
    """Misses and hits alike: writing to a cached kernel raises."""
    X, _, X_test = _data()
    folder = str(tmp_path / "cache")
    if kind == "path":
        memory = folder
    else:
        cls = SubclassedMemory if kind == "subclass" else Memory
        memory = cls(folder, mmap_mode=mmap_mode, verbose=0)
    expected = ntk_kernel(X, X_test, **NETWORK)
    for _ in range(2):  # computed, then loaded
        K = cached_kernel(memory, X, X_test, **NETWORK)
        assert not K.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            K[0, 0] = 1.0
        assert_allclose(K, expected, rtol=1e-13)


# ---------------------------------------------------------------------------
# Trust: the cache is a folder of pickles
# ---------------------------------------------------------------------------
posix_only = pytest.mark.skipif(not POSIX, reason="permissions are POSIX")
root_only = pytest.mark.skipif(not ROOT, reason="needs root to chown")


class _Planted:
    """A pickle that leaves a mark when loaded, as a planted one would run code."""

    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (open, (self.mark, "w"))


@posix_only
@pytest.mark.parametrize("where", ["folder", "inside"])
def test_folder_others_can_write_is_refused_before_loading(tmp_path, where):
    """A planted pickle in a world-writable cache is never loaded."""
    X, y, _ = _data()
    folder = tmp_path / "cache"
    NTKRegressor(memory=str(folder), **NETWORK).fit(X, y)
    entries = [p for p in _digests(folder)]
    assert entries
    mark = tmp_path / "code-ran"
    for path in entries:
        with open(path, "wb") as f:
            pickle.dump(_Planted(str(mark)), f)
    target = (
        folder if where == "folder" else os.path.dirname(os.path.dirname(entries[0]))
    )  # .../_compute_kernel
    os.chmod(target, 0o777)
    with pytest.raises(ValueError, match=r"memory=.*writable by every user"):
        NTKRegressor(memory=str(folder), **NETWORK).fit(X, y)
    with pytest.raises(ValueError, match=r"memory=.*mkdtemp"):
        cached_kernel(str(folder), X, **NETWORK)
    assert not mark.exists()


@posix_only
def test_shared_parent_needs_the_sticky_bit(tmp_path):
    """A world-writable parent is fine with the sticky bit (/tmp), not without."""
    X, y, X_test = _data()
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)
    with pytest.raises(ValueError, match=r"shared is writable by every user"):
        NTKRegressor(memory=str(parent / "cache"), **NETWORK).fit(X, y)
    assert not (parent / "cache").exists()  # refused before creating anything
    os.chmod(parent, 0o1777)
    model = NTKRegressor(memory=str(parent / "cache"), **NETWORK).fit(X, y)
    assert_allclose(
        model.predict(X_test),
        NTKRegressor(**NETWORK).fit(X, y).predict(X_test),
        rtol=1e-12,
    )


@posix_only
def test_missing_folders_are_created_private(tmp_path):
    X, y, _ = _data()
    folder = tmp_path / "a" / "b" / "cache"
    NTKRegressor(memory=str(folder), **NETWORK).fit(X, y)
    for path in (tmp_path / "a", tmp_path / "a" / "b", folder):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert _digests(folder)


@root_only
@pytest.mark.parametrize("what", ["owner", "group", "parent_owner", "link"])
def test_folder_of_another_user_is_refused(tmp_path, what):
    X, y, _ = _data()
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o755)
    memory = str(folder)
    if what == "owner":
        os.chown(folder, 54321, -1)
        match = "belongs to another user"
    elif what == "group":
        os.chmod(folder, 0o775)
        os.chown(folder, -1, 54321)
        match = "writable by the users of group 54321"
    elif what == "parent_owner":
        os.chown(tmp_path, 54321, -1)
        match = "belongs to another user"
    else:
        link = tmp_path / "link"
        link.symlink_to(folder)
        os.lchown(link, 54321, -1)
        memory = str(link)
        match = "symbolic link of another user"
    with pytest.raises(ValueError, match=match):
        NTKRegressor(memory=memory, **NETWORK).fit(X, y)


@posix_only
def test_group_writable_by_own_private_group_is_accepted(tmp_path):
    if not cache_module._private_group(os.getegid()):
        pytest.skip("the current group is not a private group")
    folder = tmp_path / "cache"
    folder.mkdir()
    os.chmod(folder, 0o775)
    assert folder_risk(folder) is None
    X, y, _ = _data()
    NTKRegressor(memory=str(folder), **NETWORK).fit(X, y)


@posix_only
def test_explicit_memory_on_unsafe_folder_warns(tmp_path):
    """A joblib.Memory is the user's choice (e.g. a team cache): a warning."""
    X, y, X_test = _data()
    folder = tmp_path / "team"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.warns(UserWarning, match=r"writable by every user.*passed explicitly"):
        got = (
            NTKRegressor(memory=Memory(str(folder), verbose=0), **NETWORK)
            .fit(X, y)
            .predict(X_test)
        )
    assert_allclose(got, NTKRegressor(**NETWORK).fit(X, y).predict(X_test), rtol=1e-12)


def test_folder_risk_is_posix_only(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    os.chmod(folder, 0o777)
    if POSIX:
        assert "every user" in folder_risk(folder)
    monkeypatch.setattr(cache_module.os, "name", "nt")
    assert folder_risk(folder) is None


# ---------------------------------------------------------------------------
# Failures: unwritable folders, bad paths
# ---------------------------------------------------------------------------
def _make_unwritable(folder, monkeypatch):
    """Make ``folder`` unwritable, also for root.

    ``chmod`` stops a normal user, but root writes anyway, and read-only
    mounts need privileges; so the calls that create or write files under
    ``folder`` (``os.mkdir``/``os.makedirs``, ``open`` for writing, and
    joblib's store, which keeps its own reference to ``open``) are made to
    fail with ``EACCES``, as the kernel would. Reading is untouched.
    """
    folder = os.path.realpath(folder)
    os.chmod(folder, 0o555)

    def inside(path):
        try:
            path = os.path.realpath(os.fspath(path))
        except TypeError:
            return False
        return path == folder or path.startswith(folder + os.sep)

    def denied(path):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def guard(original, writes):
        def wrapped(path, *args, **kwargs):
            mode = args[0] if args else kwargs.get("mode", "r")
            if inside(path) and (not writes or any(c in str(mode) for c in "wax+")):
                raise denied(path)
            return original(path, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(os, "mkdir", guard(os.mkdir, False))
    monkeypatch.setattr(os, "makedirs", guard(os.makedirs, False))
    monkeypatch.setattr(builtins, "open", guard(builtins.open, True))
    from joblib._store_backends import FileSystemStoreBackend

    monkeypatch.setattr(
        FileSystemStoreBackend,
        "_open_item",
        staticmethod(guard(FileSystemStoreBackend._open_item, True)),
    )


@pytest.fixture
def restore_mode(tmp_path):
    yield
    for root, dirs, _ in os.walk(tmp_path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700)


@pytest.mark.filterwarnings("ignore:Unable to cache to disk")  # joblib's own
@pytest.mark.parametrize("memory_kind", ["path", "Memory"])
def test_unwritable_folder_warns_and_computes(
    tmp_path, monkeypatch, restore_mode, memory_kind
):
    """Hits stored before are served; misses are computed, with a warning."""
    X, y, X_test = _data()
    X_new = X + 0.5
    folder = tmp_path / "cache"
    NTKRegressor(memory=str(folder), **NETWORK).fit(X, y).predict(X_test)
    memory = str(folder) if memory_kind == "path" else Memory(str(folder), verbose=0)
    stored = _digests(folder)
    _make_unwritable(folder, monkeypatch)
    calls = _count_computations(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = NTKRegressor(memory=memory, **NETWORK).fit(X, y)
        assert_allclose(
            hit.predict(X_test),
            NTKRegressor(**NETWORK).fit(X, y).predict(X_test),
            rtol=1e-12,
        )
    assert calls == []  # both kernels loaded
    with pytest.warns(UserWarning, match=r"memory=.*could not be stored"):
        miss = NTKRegressor(memory=memory, **NETWORK).fit(X_new, y)
    with pytest.warns(UserWarning, match=r"memory=.*could not be stored"):
        got = miss.predict(X_test, return_std=True)
    expected = NTKRegressor(**NETWORK).fit(X_new, y).predict(X_test, return_std=True)
    for a, b in zip(got, expected):
        assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert _digests(folder) == stored


def test_empty_unwritable_folder_warns_and_computes(
    tmp_path, monkeypatch, restore_mode
):
    X, y, X_test = _data()
    folder = tmp_path / "cache"
    folder.mkdir()
    _make_unwritable(folder, monkeypatch)
    with pytest.warns(UserWarning, match=r"memory=.*could not be stored"):
        model = NTKClassifier(memory=str(folder), **NETWORK).fit(X, y > 0)
    with pytest.warns(UserWarning, match=r"memory=.*could not be stored"):
        got = model.decision_function(X_test)
    expected = NTKClassifier(**NETWORK).fit(X, y > 0).decision_function(X_test)
    assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    assert os.listdir(folder) == []


def test_path_that_is_a_file_or_cannot_be_created_raises(
    tmp_path, monkeypatch, restore_mode
):
    X, y, _ = _data()
    a_file = tmp_path / "kernels.txt"
    a_file.write_text("not a folder")
    for memory, match in [
        (str(a_file), "must be a folder.*a file is in the way"),
        (str(a_file / "cache"), "cannot create the cache folder"),
    ]:
        with pytest.raises(ValueError, match="memory=.*" + match):
            NTKRegressor(memory=memory, **NETWORK).fit(X, y)
    closed = tmp_path / "closed"
    closed.mkdir()
    _make_unwritable(closed, monkeypatch)
    with pytest.raises(ValueError, match=r"memory=.*cannot create.*Permission"):
        cached_kernel(str(closed / "cache"), X, **NETWORK)
    assert a_file.read_text() == "not a folder"


# ---------------------------------------------------------------------------
# Failures: unreadable entries
# ---------------------------------------------------------------------------
def _corrupt(path, how):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        if how == "truncated":
            f.write(data[: len(data) // 2])
        elif how == "garbage":
            f.write(np.random.default_rng(0).bytes(len(data)))
        elif how == "empty":
            pass
        else:  # a valid file holding the wrong array
            joblib.dump(np.zeros((2, 2)), f)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "wrong_array"])
@pytest.mark.parametrize("mmap_mode", [None, "r+"])
def test_unreadable_entry_is_recomputed_and_rewritten(
    tmp_path, monkeypatch, caplog, how, mmap_mode
):
    """A one-line warning naming the entry (not joblib's logged traceback)."""
    X, y, X_test = _data()
    folder = str(tmp_path / "cache")
    expected = NTKRegressor(**NETWORK).fit(X, y).predict(X_test)
    NTKRegressor(memory=folder, **NETWORK).fit(X, y).predict(X_test)
    good = _digests(folder)
    for path in good:
        _corrupt(path, how)
    calls = _count_computations(monkeypatch)
    memory = Memory(folder, mmap_mode=mmap_mode, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = NTKRegressor(memory=memory, **NETWORK).fit(X, y).predict(X_test)
    assert_allclose(got, expected, rtol=1e-12)
    assert len(calls) == 2  # the train and the test kernels, again
    assert not [r for r in caplog.records if "Traceback" in r.getMessage()]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    for message in messages:
        assert "\n" not in message and len(message) < 600
        assert message.startswith("memory=") and "could not be read" in message
        assert "_compute_kernel" in message  # names the entry's folder
    # rewritten: the next fit loads both kernels, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = NTKRegressor(memory=folder, **NETWORK).fit(X, y).predict(X_test)
    assert_allclose(again, expected, rtol=1e-12)
    assert len(calls) == 2
    assert set(_digests(folder)) == set(good)
