"""Selection rules on asset attributes: parsing, matching, and which rule decides."""

from __future__ import annotations

import pytest

from tapir.appliance.engine.selection import Rule, RuleSet, is_rule_text, parse_rule
from tapir.appliance.plugin_api import AssetInfo, normalize_power_state


def vm(name: str, **meta: object) -> AssetInfo:
    return AssetInfo("vm", name, f"id-{name}", dict(meta))


WEB = vm(
    "Web-01",
    folder="/DC0/vm/prod/web",
    datacenter="DC0",
    cluster="DC0_C0",
    host="DC0_C0_H1",
    resource_pool="/DC0/host/DC0_C0/Resources/gold",
    power_state="poweredOn",
    template=False,
    tags=["Backup-Nightly", "pci"],
    custom_attributes={"Owner": "team-web", "backup": "yes"},
)
XEN = vm("db-7", folder="/Production", power_state="Halted", tags=[])


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("folder=/DC0/vm/prod/", "folder", "/DC0/vm/prod"),
        ("folder=DC0/vm", "folder", "/DC0/vm"),
        ("Power-State=off", "power_state", "poweredOff"),
        ("power_state=Running", "power_state", "poweredOn"),
        ("template=true", "template", "yes"),
        ("tag=Owner=team-web", "tag", "Owner=team-web"),
        (" name = web-* ", "name", "web-*"),
        ("ALL", "all", ""),
    ],
)
def test_rules_parse_to_a_canonical_form(text: str, kind: str, value: str) -> None:
    rule = parse_rule(text)
    assert (rule.kind, rule.value) == (kind, value)
    assert parse_rule(str(rule)) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour=red", "KIND one of folder"),
        ("folder", "expected KIND=VALUE"),
        ("name=", "name needs a value"),
        ("power_state=sleepy", "unknown power state"),
        ("template=maybe", "template=yes or template=no"),
        ("tag==x", "needs a key"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(text)
    assert not is_rule_text(text)


@pytest.mark.parametrize(
    ("rule", "asset", "expected"),
    [
        ("folder=/DC0/vm/prod", WEB, True),  # a folder above the VM's
        ("folder=/dc0/VM/prod/web", WEB, True),  # case does not matter
        ("folder=/DC0/vm/pro", WEB, False),  # whole path components only
        ("folder=/DC0/vm/prod/web/x", WEB, False),
        ("folder=/*/vm/prod", WEB, True),
        ("folder=/Production", XEN, True),
        ("resource_pool=/DC0/host/DC0_C0/Resources", WEB, True),
        ("datacenter=dc0", WEB, True),
        ("cluster=DC0_C*", WEB, True),
        ("cluster=DC0_C1", WEB, False),
        ("cluster=x", XEN, False),  # no cluster published: no match
        ("host=*_H1", WEB, True),
        ("name=web-*", WEB, True),
        ("name=web", WEB, False),
        ("tag=backup-nightly", WEB, True),
        ("tag=Backup-*", WEB, True),
        ("tag=owner=team-web", WEB, True),
        ("tag=Owner=team-*", WEB, True),
        ("tag=Owner=team-db", WEB, False),
        ("tag=Owner", WEB, False),  # a key alone is no tag
        ("tag=pci", XEN, False),
        ("power_state=on", WEB, True),
        ("power_state=poweredOff", XEN, True),  # XenServer's "Halted"
        ("power_state=suspended", WEB, False),
        ("template=no", WEB, True),
        ("template=yes", WEB, False),
        ("asset=Web-01", WEB, True),
        ("asset=id-Web-01", WEB, True),
        ("asset=web-01", WEB, False),  # explicit means exact
        ("all", XEN, True),
    ],
)
def test_matching(rule: str, asset: AssetInfo, expected: bool) -> None:
    assert parse_rule(rule).matches(asset) is expected


def test_exclude_rules_win_and_the_first_matching_rule_is_reported() -> None:
    off = vm("web-02", folder="/DC0/vm/prod", power_state="poweredOff")
    other = vm("mail", folder="/DC0/vm/office", power_state="poweredOn")
    rules = RuleSet.parse(["name=web-*", "folder=/DC0/vm/prod"], ["power_state=off", "name=web-02"])
    web, gone, unmatched = rules.evaluate([WEB, off, other])
    # Both include rules match Web-01; the first one given is reported.
    assert web.selected and web.rule == Rule("name", "web-*")
    assert web.reason == "rule name=web-*"
    assert not gone.selected
    assert gone.rule == Rule("name", "web-*")
    assert gone.excluded_by == Rule("power_state", "poweredOff")
    assert gone.reason == "excluded by power_state=poweredOff"
    assert not unmatched.selected and unmatched.rule is None
    assert unmatched.reason == "no rule matched"


def test_exclude_rules_alone_select_everything_else() -> None:
    rules = RuleSet.parse([], ["template=yes"])
    tpl = vm("tpl", template=True)
    a, b = rules.evaluate([WEB, tpl])
    assert a.selected and str(a.rule) == "all"
    assert not b.selected and str(b.excluded_by) == "template=yes"
    with pytest.raises(ValueError, match="'all' cannot be an exclude rule"):
        RuleSet.parse(["name=x"], ["all"])


def test_asset_rules_that_match_nothing_are_reported() -> None:
    rules = RuleSet.parse(["asset=Web-01", "asset=deleted-vm", "name=nothing-*"])
    decisions = rules.evaluate([WEB, XEN])
    assert [str(r) for r in rules.unmatched_assets(decisions)] == ["asset=deleted-vm"]


def test_selection_round_trip_and_jobs_without_rules() -> None:
    rules = RuleSet.parse(["folder=/a/", "folder=/a"], ["name=x"], discover=False)
    stored = rules.as_selection()
    assert stored == {"include": ["folder=/a"], "exclude": ["name=x"], "discover": False}
    assert RuleSet.from_selection(stored) == rules
    assert RuleSet.from_selection({}) is None
    assert RuleSet.from_selection({"assets": ["vm1"]}) is None
    with pytest.raises(ValueError, match="invalid selection rule"):
        RuleSet.from_selection({"include": ["bogus"]})


def test_power_state_vocabulary() -> None:
    assert normalize_power_state("shut off") == "poweredOff"
    assert normalize_power_state("Running") == "poweredOn"
    assert normalize_power_state("pmsuspended") == "suspended"
    assert normalize_power_state("teleporting") is None
    assert normalize_power_state(None) is None
