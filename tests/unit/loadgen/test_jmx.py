"""JMeter test plans in (what relevo runs of them) and out (a plan JMeter opens)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from relevo.loadgen.jmx import read_jmx
from relevo.loadgen.jmx_export import plan_to_jmx, write_jmx
from relevo.loadgen.plan import HttpRequest, Plan, PlanError, ThreadGroup, simple_plan, with_target

PLAN = """<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="5.0" jmeter="5.6.3">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="Shop" enabled="true">
      <boolProp name="TestPlan.serialize_threadgroups">false</boolProp>
      <elementProp name="TestPlan.user_defined_variables" elementType="Arguments">
        <collectionProp name="Arguments.arguments">
          <elementProp name="host" elementType="Argument">
            <stringProp name="Argument.name">host</stringProp>
            <stringProp name="Argument.value">127.0.0.1</stringProp>
          </elementProp>
        </collectionProp>
      </elementProp>
    </TestPlan>
    <hashTree>
      <ConfigTestElement guiclass="HttpDefaultsGui" testclass="ConfigTestElement" testname="Defaults">
        <stringProp name="HTTPSampler.domain">${host}</stringProp>
        <stringProp name="HTTPSampler.port">${__P(port,8080)}</stringProp>
        <stringProp name="HTTPSampler.protocol">http</stringProp>
      </ConfigTestElement>
      <hashTree/>
      <HeaderManager guiclass="HeaderPanel" testclass="HeaderManager" testname="Headers">
        <collectionProp name="HeaderManager.headers">
          <elementProp name="" elementType="Header">
            <stringProp name="Header.name">Accept-Language</stringProp>
            <stringProp name="Header.value">es</stringProp>
          </elementProp>
        </collectionProp>
      </HeaderManager>
      <hashTree/>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Readers" enabled="true">
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <stringProp name="LoopController.loops">4</stringProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">3</stringProp>
        <stringProp name="ThreadGroup.ramp_time">1</stringProp>
        <boolProp name="ThreadGroup.scheduler">false</boolProp>
        <stringProp name="ThreadGroup.duration"></stringProp>
      </ThreadGroup>
      <hashTree>
        <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="home">
          <stringProp name="HTTPSampler.path">/</stringProp>
          <stringProp name="HTTPSampler.method">GET</stringProp>
          <boolProp name="HTTPSampler.use_keepalive">true</boolProp>
        </HTTPSamplerProxy>
        <hashTree/>
        <HTTPSamplerProxy testclass="HTTPSamplerProxy" testname="x" enabled="false">
          <stringProp name="HTTPSampler.path">/never</stringProp>
        </HTTPSamplerProxy>
        <hashTree/>
        <LoopController guiclass="LoopControlPanel" testclass="LoopController" testname="twice">
          <stringProp name="LoopController.loops">2</stringProp>
        </LoopController>
        <hashTree>
          <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="page">
            <elementProp name="HTTPsampler.Arguments" elementType="Arguments">
              <collectionProp name="Arguments.arguments">
                <elementProp name="q" elementType="HTTPArgument">
                  <stringProp name="Argument.name">q</stringProp>
                  <stringProp name="Argument.value">a b</stringProp>
                </elementProp>
              </collectionProp>
            </elementProp>
            <stringProp name="HTTPSampler.path">/page</stringProp>
            <stringProp name="HTTPSampler.method">GET</stringProp>
            <stringProp name="HTTPSampler.response_timeout">2500</stringProp>
          </HTTPSamplerProxy>
          <hashTree/>
        </hashTree>
        <ConstantTimer guiclass="ConstantTimerGui" testclass="ConstantTimer" testname="think">
          <stringProp name="ConstantTimer.delay">300</stringProp>
        </ConstantTimer>
        <hashTree/>
      </hashTree>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Writers" enabled="true">
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController">
          <stringProp name="LoopController.loops">-1</stringProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">2</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <boolProp name="ThreadGroup.scheduler">true</boolProp>
        <stringProp name="ThreadGroup.duration">5</stringProp>
        <stringProp name="ThreadGroup.delay">1</stringProp>
      </ThreadGroup>
      <hashTree>
        <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="order">
          <boolProp name="HTTPSampler.postBodyRaw">true</boolProp>
          <elementProp name="HTTPsampler.Arguments" elementType="Arguments">
            <collectionProp name="Arguments.arguments">
              <elementProp name="" elementType="HTTPArgument">
                <stringProp name="Argument.value">{"item": 1}</stringProp>
              </elementProp>
            </collectionProp>
          </elementProp>
          <stringProp name="HTTPSampler.domain">localhost</stringProp>
          <stringProp name="HTTPSampler.port">9000</stringProp>
          <stringProp name="HTTPSampler.path">/orders</stringProp>
          <stringProp name="HTTPSampler.method">POST</stringProp>
          <boolProp name="HTTPSampler.use_keepalive">false</boolProp>
        </HTTPSamplerProxy>
        <hashTree>
          <HeaderManager guiclass="HeaderPanel" testclass="HeaderManager" testname="json">
            <collectionProp name="HeaderManager.headers">
              <elementProp name="" elementType="Header">
                <stringProp name="Header.name">Content-Type</stringProp>
                <stringProp name="Header.value">application/json</stringProp>
              </elementProp>
            </collectionProp>
          </HeaderManager>
          <hashTree/>
        </hashTree>
        <ResultCollector guiclass="SummaryReport" testclass="ResultCollector" testname="Summary"/>
        <hashTree/>
      </hashTree>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Off" enabled="false">
        <stringProp name="ThreadGroup.num_threads">99</stringProp>
      </ThreadGroup>
      <hashTree/>
    </hashTree>
  </hashTree>
</jmeterTestPlan>
"""


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.jmx"
    path.write_text(PLAN)
    return path


def test_thread_groups_and_samplers(plan_file: Path) -> None:
    """Enabled groups with their threads, ramp-up, loops or scheduler, in plan order."""
    plan, _ = read_jmx(plan_file)
    assert plan.name == "Shop"
    readers, writers = plan.groups
    assert (readers.name, readers.threads, readers.ramp_up_s, readers.loops, readers.duration_s) == (
        "Readers",
        3,
        1.0,
        4,
        None,
    )
    assert (writers.name, writers.threads, writers.loops, writers.duration_s, writers.delay_s) == (
        "Writers",
        2,
        None,
        5.0,
        1.0,
    )
    # The disabled sampler is skipped; the loop controller repeats its child.
    assert [r.label for r in readers.requests] == ["home", "page", "page"]
    assert readers.total_samples == 3 * 4 * 3
    assert plan.labels == ("home", "page", "order")


def test_defaults_variables_and_headers_apply_in_scope(plan_file: Path) -> None:
    """HTTP Request Defaults fill what a sampler leaves empty; variables and property defaults resolve."""
    plan, _ = read_jmx(plan_file)
    home, page, _ = plan.groups[0].requests
    assert (home.host, home.port, home.path) == ("127.0.0.1", 8080, "/")
    assert page.path == "/page?q=a+b" and page.timeout_s == 2.5
    assert ("Accept-Language", "es") in home.headers
    order = plan.groups[1].requests[0]
    assert (order.method, order.host, order.port, order.keepalive) == ("POST", "localhost", 9000, False)
    assert order.body == b'{"item": 1}'
    assert ("Content-Type", "application/json") in order.headers
    assert ("Content-Type", "application/json") not in home.headers  # a sampler's own manager stays its own


def test_what_is_not_run_is_said(plan_file: Path) -> None:
    """A think-time timer is not honoured, and the reader says so instead of dropping it silently."""
    _, warnings = read_jmx(plan_file)
    assert any("think" in w and "ignored" in w for w in warnings)
    assert not any("Summary" in w for w in warnings)  # listeners change nothing about the load


def test_target_overrides_every_host(plan_file: Path) -> None:
    """--target sends every sampler to one host and port, keeping each path."""
    plan, _ = read_jmx(plan_file)
    moved = with_target(plan, "http://127.0.0.9:8081")
    assert {(r.host, r.port) for g in moved.groups for r in g.requests} == {("127.0.0.9", 8081)}
    assert [r.path for r in moved.groups[0].requests] == ["/", "/page?q=a+b", "/page?q=a+b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PLAN.replace("${host}", "${nohost}"), "unknown variable"),
        (PLAN.replace('"HTTPSampler.protocol">http<', '"HTTPSampler.protocol">https<'), "https"),
        ("<?xml version='1.0'?><testResults/>", "not a JMeter test plan"),
    ],
)
def test_plans_relevo_cannot_run_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Unknown variables, https and non-plans are errors that name the file (exit status 2)."""
    path = tmp_path / "bad.jmx"
    path.write_text(text)
    with pytest.raises(PlanError, match=message) as info:
        read_jmx(path)
    assert "bad.jmx" in str(info.value) and info.value.exit_status == 2


def test_export_then_read_gives_the_same_plan(tmp_path: Path) -> None:
    """relevo's plan written as .jmx and read back is the same plan (whole seconds survive)."""
    closed = simple_plan(
        "http://127.0.0.1:8080/x?y=1",
        threads=1000,
        loops=50,
        ramp_up_s=1,
        method="POST",
        headers=(("X-A", "b"),),
        body=b"payload",
        timeout_s=3,
        keepalive=False,
    )
    opened = simple_plan("http://127.0.0.1:8080/", threads=50, duration_s=30, rate_rps=2000)
    for plan in (closed, opened):
        path = tmp_path / "out.jmx"
        write_jmx(plan, path)
        back, _ = read_jmx(path)
        assert back.groups == plan.groups


def test_export_is_jmeter_5_format() -> None:
    """The file has JMeter 5.x's root, a TestPlan, and a Thread Group holding an HTTP sampler."""
    text, warnings = plan_to_jmx(simple_plan("http://127.0.0.1:8080/", threads=2, loops=3, ramp_up_s=0.5))
    root = ET.fromstring(text)  # noqa: S314  # our own output
    assert root.tag == "jmeterTestPlan" and root.get("properties") == "5.0"
    assert root.get("jmeter", "").startswith("5.")
    assert root.find("./hashTree/TestPlan") is not None
    group = root.find("./hashTree/hashTree/ThreadGroup")
    assert group is not None
    assert group.find("./stringProp[@name='ThreadGroup.num_threads']").text == "2"  # type: ignore[union-attr]
    assert root.find("./hashTree/hashTree/hashTree/HTTPSamplerProxy") is not None
    assert any("ramp-up" in w for w in warnings)  # 0.5 s is not whole seconds in JMeter


def test_a_plan_needs_requests() -> None:
    """A thread group without HTTP requests is refused."""
    with pytest.raises(PlanError):
        ThreadGroup(requests=())
    with pytest.raises(PlanError):
        Plan(groups=())
    with pytest.raises(PlanError, match="duration"):
        ThreadGroup(loops=None, requests=(HttpRequest(label="x", host="h", port=80),))
