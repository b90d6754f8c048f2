"""The Grafana dashboard and the Prometheus alert rules under deploy/monitoring,
checked by reading them.

No Prometheus runs here (promtool ships only in a system package; with it,
``promtool check rules`` and ``promtool test rules alerts.test.yaml`` in
deploy/monitoring check the same files), so the PromQL is checked by a small
tokenizer instead: brackets balance, every name
called is a PromQL function or aggregation, range vectors appear only inside
range functions and ``rate``-like functions only read counters, and every
metric, label and label value is one the service really exports, collected
from a live ``/metrics`` read after a known sequence of calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from test_metrics_conventions import OUTCOMES, exercise, read_metrics

from liya_engine.app import SERVICE_NAMES
from liya_engine.config.model import MODES
from liya_engine.errors import REASONS
from liya_engine.providers.facts import PRECEDENCE

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERT_TESTS = MONITORING / "alerts.test.yaml"  # promtool test rules, run by hand
DASHBOARD = MONITORING / "dashboard.json"

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
SEVERITIES = ("critical", "warning", "info")
AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split()
)
OVER_TIME = {f"{a}_over_time" for a in "avg min max sum count quantile stddev stdvar last".split()}
RANGE_FUNCTIONS = frozenset(
    {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets"}
    | {"predict_linear", "holt_winters", "absent_over_time", "present_over_time"}
    | OVER_TIME
)
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
FUNCTIONS = (
    frozenset(
        "abs absent ceil clamp clamp_max clamp_min day_of_month day_of_week day_of_year "
        "days_in_month exp floor histogram_quantile histogram_count histogram_sum "
        "histogram_fraction hour label_join label_replace ln log2 log10 minute month "
        "round scalar sgn sort sort_desc sqrt time timestamp vector year".split()
    )
    | RANGE_FUNCTIONS
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
#: Grafana's variables, as the dashboard uses them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": ".+"}

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<duration>\d+(?:ms|s|m|h|d|w|y)(?![A-Za-z0-9_]))
    |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|==|!=|>=|<=|[-+*/%^<>=,(){}\[\]])
    )""",
    re.VERBOSE,
)


@dataclass
class Exported:
    """What the service's ``/metrics`` shows: sample name -> its label names,
    label name -> every value it may take."""

    labels: dict[str, set[str]]
    values: dict[str, set[str]] = field(default_factory=dict)
    counters: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match and match.end() > pos, f"cannot read {expr[pos:]!r} in {expr!r}"
        out.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return json.loads('"' + text[1:-1].replace('\\"', '"').replace('"', '\\"') + '"')


def _check_value(exported: Exported, label: str, op: str, value: str, expr: str) -> None:
    known = exported.values.get(label)
    if known is None:  # job, instance, model, le, version: the operator's or unbounded
        return
    if op in ("=", "!="):
        assert value in known, f"{label}={value!r} is never exported, in {expr!r}"
        return
    pattern = re.compile(value)
    for alternative in value.split("|"):
        if re.fullmatch(r"[A-Za-z0-9_]+", alternative):
            assert alternative in known, f"{label}=~ names {alternative!r}, in {expr!r}"
    assert any(pattern.fullmatch(v) for v in known), f"{label}=~{value!r} matches nothing"


def check_promql(expr: str, exported: Exported) -> set[str]:
    """Check ``expr``; return the labels its groupings keep (for templates)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    toks = tokens(expr)
    brackets: list[str] = []
    calls: list[list] = []  # per open "(": [function or None, saw a range vector]
    grouped: set[str] = set()
    metric: str | None = None
    pending: str | None = None  # an aggregation whose "(" follows its by/without
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in GROUPING:
            assert following == "(", f"{text} without a label list in {expr!r}"
            close = next(j for j in range(i + 2, len(toks)) if toks[j][1] == ")")
            for k, name in toks[i + 2 : close]:
                if name != ",":
                    assert k == "ident" and _known_label(exported, name), f"label {name!r}"
                    grouped.add(name)
            i = close + 1
            continue
        if kind == "ident" and text in AGGREGATIONS and following in ("by", "without"):
            pending = text
            i += 1
            continue
        if kind == "ident" and following == "(":
            assert text in FUNCTIONS | AGGREGATIONS, f"unknown function {text!r} in {expr!r}"
            calls.append([text, False])
            brackets.append("(")
            i += 2
            continue
        if kind == "ident" and text not in KEYWORDS:
            assert text in exported.labels, f"{text!r} is not an exported series, in {expr!r}"
            metric = text
        elif text == "{":
            close = next(j for j in range(i + 1, len(toks)) if toks[j][1] == "}")
            body = [t for t in toks[i + 1 : close] if t[1] != ","]
            assert len(body) % 3 == 0, f"malformed selector in {expr!r}"
            for (k, name), (_, op), (vk, raw) in zip(
                body[::3], body[1::3], body[2::3], strict=True
            ):
                assert k == "ident" and vk == "string" and op in ("=", "!=", "=~", "!~"), expr
                allowed = exported.labels.get(metric or "", set()) | TARGET_LABELS
                assert name in allowed, f"{metric} has no label {name!r}, in {expr!r}"
                _check_value(exported, name, op, _unquote(raw), expr)
            i = close + 1
            continue
        elif text == "[":
            assert toks[i + 1][0] == "duration" and toks[i + 2][1] == "]", expr
            assert calls and calls[-1][0] in RANGE_FUNCTIONS, f"stray range vector in {expr!r}"
            if calls[-1][0] in COUNTER_FUNCTIONS:
                assert metric in exported.counters, f"{calls[-1][0]}() of non-counter {metric}"
            calls[-1][1] = True
            i += 3
            continue
        elif text == "(":
            calls.append([pending, False])
            pending = None
            brackets.append("(")
        elif text in ("}", "]"):
            raise AssertionError(f"unbalanced {text!r} in {expr!r}")
        elif text == ")":
            assert brackets, f"unbalanced ')' in {expr!r}"
            brackets.pop()
            function, saw_range = calls.pop()
            if function in RANGE_FUNCTIONS:
                assert saw_range, f"{function}() needs a range vector, in {expr!r}"
        if kind != "ident":
            metric = metric if text in ("{", "[") else None
        i += 1
    assert not brackets, f"unclosed bracket in {expr!r}"
    return grouped


def _known_label(exported: Exported, name: str) -> bool:
    return name in TARGET_LABELS or any(name in labels for labels in exported.labels.values())


def alert_rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_targets() -> list[tuple[dict, dict]]:
    return [(p, t) for p in dashboard()["panels"] for t in p.get("targets", ())]


@pytest.fixture
async def exported(servers, fake) -> Exported:
    """The series of a server that served the known sequence of calls."""
    port, _ = await exercise(servers, fake)
    families = await read_metrics(port)
    found = Exported(labels={})
    for family in families:
        for sample in family.samples:
            found.labels.setdefault(sample.name, set()).update(sample.labels)
            for name, value in sample.labels.items():
                found.values.setdefault(name, set()).add(value)
            if family.type in ("counter", "histogram"):  # _total, _bucket, _count, _sum
                found.counters.add(sample.name)
    # Labels with a fixed vocabulary may take values the calls above never made.
    methods = {m.name for s in SERVICE_NAMES for m in _service(s).methods}
    found.values["reason"] = set(REASONS) | OUTCOMES
    found.values["grpc_code"] = {c.name for c in grpc.StatusCode}
    found.values["grpc_service"] = set(SERVICE_NAMES)
    found.values["grpc_method"] = methods
    found.values["provider"] = set(PRECEDENCE)
    found.values["mode"] = set(MODES)
    for name in ("job", "instance", "model", "le", "version"):
        found.values.pop(name, None)
    return found


def _service(full_name: str):
    from google.protobuf import descriptor_pool

    return descriptor_pool.Default().FindServiceByName(full_name)


# -- the checker itself ------------------------------------------------------


def test_the_checker_refuses_what_it_should():
    exported = Exported(
        labels={"a_total": {"reason"}, "g": set()},
        values={"reason": {"OK", "INTERNAL"}},
        counters={"a_total"},
    )
    assert check_promql('sum by (reason) (rate(a_total{reason!="OK"}[5m]))', exported) == {"reason"}
    for bad in (
        "sum(rate(a_total[5m])",  # unbalanced
        "summ(rate(a_total[5m]))",  # no such function
        "rate(b_total[5m])",  # not exported
        'rate(a_total{code="OK"}[5m])',  # no such label
        'rate(a_total{reason="INTERNAL_ERROR"}[5m])',  # no such value
        'rate(a_total{reason=~"OK|INTRNAL"}[5m])',  # no such alternative
        "rate(g[5m])",  # rate of a gauge
        "rate(a_total)",  # no range
        "a_total[5m]",  # range outside a range function
        "sum by (tenant) (a_total)",  # no such label
        "rate(a_total[$__interval])",  # a variable the dashboard does not define
    ):
        with pytest.raises(AssertionError):
            check_promql(bad, exported)


# -- alerts ------------------------------------------------------------------


async def test_every_alert_reads_only_exported_series(exported):
    for rule in alert_rules():
        kept = check_promql(rule["expr"], exported)
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.([A-Za-z_]+)", text):
                assert label in kept or (not kept and label in TARGET_LABELS), (
                    f"{rule['alert']}: {{{{ $labels.{label} }}}} is not kept by its expression"
                )


def alert_tests() -> dict:
    return yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))


async def test_the_alert_unit_tests_feed_exported_series(exported):
    for case in alert_tests()["tests"]:
        for item in case["input_series"]:
            # A series of another job stands for another gRPC service: foreign on purpose.
            if 'job="liya-engine"' in item["series"]:
                check_promql(item["series"], exported)
            else:
                assert 'job="other"' in item["series"], item["series"]


def test_every_critical_alert_has_a_unit_test_that_fires_it():
    doc = alert_tests()
    assert doc["rule_files"] == [ALERTS.name]
    rules = {r["alert"]: r for r in alert_rules()}
    fired = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            assert check["alertname"] in rules, check["alertname"]
            for alert in check.get("exp_alerts", ()):
                fired.add(check["alertname"])
                severity = rules[check["alertname"]]["labels"]["severity"]
                assert alert["exp_labels"]["severity"] == severity
    critical = {n for n, r in rules.items() if r["labels"]["severity"] == "critical"}
    assert critical <= fired, f"no unit test fires {sorted(critical - fired)}"


def test_alert_rules_are_well_formed():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert re.fullmatch(r"LiyaEngine[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert all(v.strip() for v in rule["annotations"].values()), rule["alert"]


def test_the_alerts_the_operations_guide_promises_exist():
    exprs = {r["alert"]: " ".join(r["expr"].split()) for r in alert_rules()}
    assert 'reason="KEY_DECRYPTION_FAILED"' in exprs["LiyaEngineKeyDecryptionFailed"]
    assert "sum by (job, reason)" in exprs["LiyaEngineErrorRatioHigh"]
    assert exprs["LiyaEngineDatabaseDown"] == "liya_database_up == 0"
    assert 'reason="STORAGE_UNAVAILABLE"' in exprs["LiyaEngineStorageUnavailable"]
    assert exprs["LiyaEngineProviderLatencyHigh"].startswith("histogram_quantile(0.95, ")
    assert "liya_provider_duration_seconds_bucket" in exprs["LiyaEngineProviderLatencyHigh"]
    assert 'reason="BUDGET_EXCEEDED"' in exprs["LiyaEngineBudgetRefusalsHigh"]
    assert 'mode="managed"' in exprs["LiyaEngineManagedCredentialsFailing"]
    # Rules on the shared gRPC names select this service's services only.
    for name, expr in exprs.items():
        if "grpc_server_" in expr:
            selectors = re.findall(r"grpc_server_\w+\{([^}]*)\}", expr)
            assert selectors and all("grpc_service" in s for s in selectors), name


# -- dashboard ---------------------------------------------------------------


async def test_every_dashboard_query_reads_only_exported_series(exported):
    for panel, target in dashboard_targets():
        kept = check_promql(target["expr"], exported)
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            assert label in kept or label in TARGET_LABELS, (panel["title"], label)
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "job")
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"]).groups()
    assert metric in exported.labels and label in TARGET_LABELS


def test_dashboard_is_importable_grafana_json():
    board = dashboard()
    assert board["uid"] == "liya-engine" and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["description"].strip(), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def test_dashboard_has_the_panels_the_issue_asks_for():
    panels = {p["title"]: p for p in dashboard()["panels"] if p["type"] != "row"}
    queries = {
        t: " ".join(" ".join(x["expr"] for x in p["targets"]).split()) for t, p in panels.items()
    }
    assert "sum by (reason)" in queries["Error ratio by reason"]
    assert (
        "grpc_server_handling_seconds_bucket" in queries["RPC latency by method (successful calls)"]
    )
    assert "sum by (le, provider)" in queries["Provider latency by provider (successful calls)"]
    assert "liya_rpc_in_flight" in queries["Calls in flight"]
    assert "liya_database_up" in queries["Database up"]
    assert 'reason="STORAGE_UNAVAILABLE"' in queries["Storage unavailable"]
    budget = panels["Budget refusals"]
    assert "BUDGET_EXCEEDED" in queries["Budget refusals"]
    assert "not enforced by this build yet" in budget["description"]
    assert "liya_key_health_transitions_total" in queries["Key health transitions by provider"]
