"""The disk alarm's pure decision and the usage probe."""
from axon.node.disk import ENOSPC_SLACK, DiskAlarm, DiskLimits, DiskUsage, NOSPACE, over_limit, read_usage


def test_limits_of_zero_are_off():
    assert not over_limit(DiskLimits(0, 0), DiskUsage(free_bytes=0, data_bytes=10**12))


def test_free_floor_and_quota():
    limits = DiskLimits(min_free_bytes=100, quota_bytes=1000)
    assert not over_limit(limits, DiskUsage(100, 999))
    assert over_limit(limits, DiskUsage(99, 0))
    assert over_limit(limits, DiskUsage(10**9, 1000))


def test_alarm_raises_and_clears():
    alarm = DiskAlarm(DiskLimits(min_free_bytes=100, quota_bytes=1000))
    assert alarm.alarms() == []
    assert alarm.observe(DiskUsage(50, 0))
    assert alarm.alarms() == [NOSPACE]
    assert not alarm.observe(DiskUsage(500, 10))
    assert alarm.alarms() == []


def test_enospc_holds_until_space_is_back():
    alarm = DiskAlarm(DiskLimits(0, 0))
    alarm.on_enospc()
    assert alarm.alarms() == [NOSPACE]
    assert alarm.observe(DiskUsage(0, 5))  # still no room at all
    assert alarm.observe(DiskUsage(4096, 5))  # room for a record or two is not room to run
    assert not alarm.observe(DiskUsage(ENOSPC_SLACK, 5))
    assert alarm.alarms() == []


def test_read_usage_counts_files(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    usage = read_usage(str(tmp_path))
    assert usage.data_bytes == 1024
    assert usage.free_bytes > 0


def test_nospace_is_507():
    from axon.api.errors import NoSpace
    from axon.web.replies import status_of
    assert status_of(NoSpace("out of space")) == 507


def test_is_nospace_sees_enospc_through_causes_and_leveldb_text():
    import errno
    from axon.node.disk import is_nospace
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("WAL write failed") from exc
    except RuntimeError as wrapped:
        assert is_nospace(wrapped)
    assert is_nospace(Exception("apply failed: b'IO error: x/000004.log: No space left on device'"))
    assert not is_nospace(OSError(errno.EIO, "Input/output error"))
    assert not is_nospace(ValueError("no"))
