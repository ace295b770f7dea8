"""Write a relevo `Plan` as a JMeter 5.x test plan (.jmx) that JMeter opens and runs as it stands.

Each thread group becomes a Thread Group (threads, ramp-up, loops or scheduler duration, delay), each
request an HTTP Request sampler (with an HTTP Header Manager for its headers and a raw body), and an
open-model rate a Constant Throughput Timer shared by the group's threads: the closest JMeter comes, as
it remains a closed model. JMeter counts ramp-up, duration and delay in whole seconds; values that are
not whole are rounded up, with a warning.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from relevo.loadgen.plan import HttpRequest, Plan, ThreadGroup

JMETER_VERSION = "5.6.3"
# ConstantThroughputTimer.calcMode: "all active threads in current thread group (shared)".
CTT_SHARED_IN_GROUP = 4


def _prop(parent: ET.Element, kind: str, name: str, value: object) -> ET.Element:
    element = ET.SubElement(parent, kind, name=name)
    if isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)
    return element


def _seconds(value: float, what: str, group: str, warnings: list[str]) -> int:
    whole = math.ceil(value - 1e-9)
    if abs(whole - value) > 1e-9:
        warnings.append(f"{group!r}: JMeter's {what} is whole seconds; {value:g} s written as {whole} s")
    return whole


def _element(parent: ET.Element, tag: str, gui: str, name: str) -> tuple[ET.Element, ET.Element]:
    element = ET.SubElement(parent, tag, guiclass=gui, testclass=tag, testname=name, enabled="true")
    return element, ET.SubElement(parent, "hashTree")


def _sampler(parent: ET.Element, request: HttpRequest) -> None:
    sampler, tree = _element(parent, "HTTPSamplerProxy", "HttpTestSampleGui", request.label)
    args = ET.SubElement(sampler, "elementProp", name="HTTPsampler.Arguments", elementType="Arguments")
    collection = ET.SubElement(args, "collectionProp", name="Arguments.arguments")
    if request.body:
        _prop(sampler, "boolProp", "HTTPSampler.postBodyRaw", True)
        arg = ET.SubElement(collection, "elementProp", name="", elementType="HTTPArgument")
        _prop(arg, "boolProp", "HTTPArgument.always_encode", False)
        _prop(arg, "stringProp", "Argument.value", request.body.decode("utf-8", errors="replace"))
        _prop(arg, "stringProp", "Argument.metadata", "=")
    _prop(sampler, "stringProp", "HTTPSampler.domain", request.host)
    _prop(sampler, "stringProp", "HTTPSampler.port", request.port)
    _prop(sampler, "stringProp", "HTTPSampler.protocol", request.scheme)
    _prop(sampler, "stringProp", "HTTPSampler.path", request.path)
    _prop(sampler, "stringProp", "HTTPSampler.method", request.method)
    _prop(sampler, "boolProp", "HTTPSampler.follow_redirects", False)
    _prop(sampler, "boolProp", "HTTPSampler.auto_redirects", False)
    _prop(sampler, "boolProp", "HTTPSampler.use_keepalive", request.keepalive)
    _prop(sampler, "boolProp", "HTTPSampler.DO_MULTIPART_POST", False)
    timeout_ms = str(round(request.timeout_s * 1000))
    _prop(sampler, "stringProp", "HTTPSampler.connect_timeout", timeout_ms)
    _prop(sampler, "stringProp", "HTTPSampler.response_timeout", timeout_ms)
    if request.headers:
        manager, _ = _element(tree, "HeaderManager", "HeaderPanel", "HTTP Header Manager")
        headers = ET.SubElement(manager, "collectionProp", name="HeaderManager.headers")
        for name, value in request.headers:
            header = ET.SubElement(headers, "elementProp", name="", elementType="Header")
            _prop(header, "stringProp", "Header.name", name)
            _prop(header, "stringProp", "Header.value", value)


def _group(parent: ET.Element, group: ThreadGroup, warnings: list[str]) -> None:
    element, tree = _element(parent, "ThreadGroup", "ThreadGroupGui", group.name)
    _prop(element, "stringProp", "ThreadGroup.on_sample_error", "continue")
    loops = -1 if group.loops is None or group.rate_rps is not None else group.loops
    controller = ET.SubElement(
        element,
        "elementProp",
        name="ThreadGroup.main_controller",
        elementType="LoopController",
        guiclass="LoopControlPanel",
        testclass="LoopController",
        testname="Loop Controller",
        enabled="true",
    )
    _prop(controller, "boolProp", "LoopController.continue_forever", False)
    _prop(controller, "stringProp", "LoopController.loops", loops)
    _prop(element, "stringProp", "ThreadGroup.num_threads", group.threads)
    _prop(
        element,
        "stringProp",
        "ThreadGroup.ramp_time",
        _seconds(group.ramp_up_s, "ramp-up", group.name, warnings),
    )
    scheduled = group.duration_s is not None
    _prop(element, "boolProp", "ThreadGroup.scheduler", scheduled)
    duration = _seconds(group.duration_s, "duration", group.name, warnings) if group.duration_s else ""
    _prop(element, "stringProp", "ThreadGroup.duration", duration)
    delay = _seconds(group.delay_s, "startup delay", group.name, warnings) if scheduled else ""
    _prop(element, "stringProp", "ThreadGroup.delay", delay)
    _prop(element, "boolProp", "ThreadGroup.same_user_on_next_iteration", True)
    if group.rate_rps is not None:
        timer, _ = _element(tree, "ConstantThroughputTimer", "TestBeanGUI", "Constant Throughput Timer")
        _prop(timer, "intProp", "calcMode", CTT_SHARED_IN_GROUP)
        _prop(timer, "doubleProp", "throughput", repr(group.rate_rps * 60.0))
        warnings.append(
            f"{group.name!r}: JMeter paces the rate with a Constant Throughput Timer, a closed model that "
            "cannot exceed what its threads manage"
        )
    for request in group.requests:
        _sampler(tree, request)


def plan_to_jmx(plan: Plan) -> tuple[str, list[str]]:
    """The plan as .jmx text, and what JMeter will not run exactly as relevo would."""
    warnings: list[str] = []
    root = ET.Element("jmeterTestPlan", version="1.2", properties="5.0", jmeter=JMETER_VERSION)
    top = ET.SubElement(root, "hashTree")
    test_plan, tree = _element(top, "TestPlan", "TestPlanGui", plan.name)
    _prop(test_plan, "boolProp", "TestPlan.functional_mode", False)
    _prop(test_plan, "boolProp", "TestPlan.serialize_threadgroups", False)
    variables = ET.SubElement(
        test_plan,
        "elementProp",
        name="TestPlan.user_defined_variables",
        elementType="Arguments",
        guiclass="ArgumentsPanel",
        testclass="Arguments",
        testname="User Defined Variables",
        enabled="true",
    )
    ET.SubElement(variables, "collectionProp", name="Arguments.arguments")
    for group in plan.groups:
        _group(tree, group, warnings)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n", warnings


def write_jmx(plan: Plan, path: Path) -> list[str]:
    text, warnings = plan_to_jmx(plan)
    path.write_text(text, encoding="utf-8")
    return warnings
