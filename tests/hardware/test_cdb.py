"""CDB building, checked byte by byte against SPC/SSC/SMC layouts."""

from __future__ import annotations

import pytest

from tapir.hardware import cdb
from tapir.hardware.cdb import ElementType, SpaceCode


def test_spc_commands_built_with_pyscsi() -> None:
    assert cdb.test_unit_ready() == bytes(6)
    assert cdb.inquiry(evpd=True, page=0x80, alloc=255).hex() == "12018000ff00"
    assert cdb.mode_sense6(0x3F, dbd=True).hex() == "1a083f00ff00"
    assert cdb.prevent_allow_medium_removal(True).hex() == "1e0000000100"


def test_smc_commands() -> None:
    assert cdb.move_medium(1, 1024, 256).hex() == "a50000010400010000000000"
    res = cdb.read_element_status(ElementType.DATA_TRANSFER, start=256, count=2, dvcid=True)
    assert res.hex() == "b81401000002" + "01" + "00ffff" + "0000"
    assert cdb.initialize_element_status().hex() == "070000000000"


def test_ssc_io_commands() -> None:
    assert cdb.write6(262144, fixed=False).hex() == "0a0004000000"
    assert cdb.write6(3, fixed=True).hex() == "0a0100000300"
    assert cdb.read6(1, fixed=True, sili=True).hex() == "080300000100"
    assert cdb.write_filemarks6(2).hex() == "100000000200"
    assert cdb.rewind().hex() == "010000000000"
    assert cdb.load_unload(True).hex() == "1b0000000100"
    assert cdb.load_unload(False).hex() == "1b0000000000"


def test_space_counts_are_twos_complement() -> None:
    assert cdb.space6(SpaceCode.FILEMARKS, -1).hex() == "1101ffffff00"
    assert cdb.space6(SpaceCode.END_OF_DATA).hex() == "110300000000"
    s16 = cdb.space16(SpaceCode.BLOCKS, -2)
    assert len(s16) == 16 and s16[0] == 0x91 and s16[4:12] == (-2).to_bytes(8, "big", signed=True)


def test_commands_tgt_refuses_are_still_built_correctly() -> None:
    assert cdb.locate10(0x01020304).hex() == "2b0000010203040000" + "00"
    l16 = cdb.locate16(5, partition=1)
    assert len(l16) == 16 and l16[0] == 0x92 and l16[1] == 0x02 and l16[3] == 1
    assert int.from_bytes(l16[4:12], "big") == 5
    assert cdb.read_position().hex() == "34" + "00" * 9
    assert cdb.erase().hex() == "190100000000"
    assert cdb.report_density_support(media=True, alloc=512).hex() == "44010000000000020000"
    assert cdb.log_sense(0x2E, alloc=0x4000).hex() == "4d006e00000000400000"
    ra = cdb.read_attribute(0x0400, alloc=0x100)
    assert len(ra) == 16 and ra[0] == 0x8C and ra[8:10] == b"\x04\x00"
    assert int.from_bytes(ra[10:14], "big") == 0x100
    assert cdb.security_protocol_in(0x20, 0x0020, 8192).hex() == "a2200020000000002000" + "0000"
    assert cdb.security_protocol_out(0x20, 0x0010, 52)[:4].hex() == "b5200010"


@pytest.mark.parametrize("n", [-1, 1 << 24])
def test_out_of_range_lengths_are_refused(n: int) -> None:
    with pytest.raises(ValueError):
        cdb.write6(n, fixed=False)


def test_out_of_range_space_and_mode_select() -> None:
    with pytest.raises(ValueError):
        cdb.space6(SpaceCode.BLOCKS, 1 << 23)
    with pytest.raises(ValueError):
        cdb.mode_select6(bytes(256))
