"""Checks of the Quicksilver Helm chart, run by scripts/helm-check.

Every values file of ci/ is linted, rendered with `helm template`, and each manifest is validated
with kubernetes-validate (strict) against the oldest Kubernetes version of the chart's kubeVersion
and the newest the tool knows; custom resources (ServiceMonitor, HTTPRoute), which it cannot check,
get assertions of their own. The hub's own configuration loader (`quicksilver --check-config`)
accepts the environment of every rendered hub container, so the chart and the hub cannot drift
apart, and the helm test pod's script runs against a real hub.

Environment: HELM (the helm binary), QUICKSILVER_BIN (the hub binary), and optionally BUSYBOX (a
busybox binary, to run the test pod's script with the tools of its Alpine-based image).
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils
import yaml

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
HELM = os.environ.get("HELM", "helm")
QUICKSILVER_BIN = os.environ.get("QUICKSILVER_BIN", "")
RELEASE = "qs"
NAMESPACE = "mercure"

# The values files scripts/helm-check must render, at least (the task's list).
REQUIRED_CI_FILES = {
    "default-values.yaml",
    "single-node-values.yaml",
    "ingress-values.yaml",
    "gateway-values.yaml",
    "hpa-servicemonitor-values.yaml",
    "existing-secret-values.yaml",
}
# Custom resources kubernetes-validate has no schema for: checked by assertions below.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
# Settings the chart sets itself, so `config` refuses them (values.schema.json).
CHART_MANAGED_SETTINGS = {
    "addr",
    "metrics_addr",
    "history_path",
    "jwt_key",
    "publisher_jwt_key",
    "subscriber_jwt_key",
    "nats_user",
    "nats_password",
    "nats_token",
    "nats_creds",
    "nats_tls_ca",
    "nats_tls_cert",
    "nats_tls_key",
    "cert_file",
    "key_file",
}
# Test keys of the repository (public halves only), standing in for PEM keys in Secrets.
JWT_FIXTURES = REPO / "tests" / "fixtures" / "jwt"
PUBLIC_KEY_FIXTURES = {
    "RS256": "rsa_public.pem",
    "RS384": "rsa_public.pem",
    "RS512": "rsa_public.pem",
    "ES256": "es256_public.pem",
    "ES384": "es384_public.pem",
    "EdDSA": "ed25519_public.pem",
}


def ci_files():
    return sorted((CHART / "ci").glob("*-values.yaml"))


def oldest_kube_version():
    """The lower bound of Chart.yaml's kubeVersion (">=1.30.0-0" gives "1.30.0")."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*v?(\d+\.\d+)(\.\d+)?(-0)?", chart["kubeVersion"].strip())
    assert match, f"kubeVersion {chart['kubeVersion']!r} is not of the form >=1.N.0-0"
    return match.group(1) + ".0"


OLDEST = oldest_kube_version()
NEWEST = kubernetes_validate.utils.latest_version()


def helm_template(*args, kube_version=OLDEST):
    """`helm template` of the chart; returns the CompletedProcess (stdout, stderr as text)."""
    command = [HELM, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
               "--kube-version", kube_version, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


_renders = {}


def render(*args, kube_version=OLDEST):
    """The manifests rendered with these arguments, as a list of dicts (cached)."""
    key = (args, kube_version)
    if key not in _renders:
        result = helm_template(*args, kube_version=kube_version)
        if result.returncode != 0:
            raise AssertionError(f"helm template {' '.join(args)} failed:\n{result.stderr}")
        _renders[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _renders[key]


def render_values(values, *args):
    """Renders with a values document given inline (written to a temporary file)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        yaml.safe_dump(values, file)
    try:
        return render("-f", file.name, *args)
    finally:
        os.unlink(file.name)


def render_fails(values=None, *args):
    """Renders what must fail; returns helm's error output."""
    extra = []
    if values is not None:
        file = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(values, file)
        file.close()
        extra = ["-f", file.name]
    try:
        result = helm_template(*extra, *args)
    finally:
        if extra:
            os.unlink(extra[1])
    assert result.returncode != 0, f"rendering {values} {args} should have failed"
    return result.stderr


def render_notes(*args):
    """NOTES.txt as `helm install` prints it (helm template does not render it): rendered through
    `tpl` from a copy of the chart."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
        (chart / "templates" / "zz-notes.yaml").write_text(
            'notes: |\n{{ tpl (.Files.Get "notes.txt") . | indent 2 }}\n')
        result = subprocess.run(
            [HELM, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version",
             OLDEST, "--show-only", "templates/zz-notes.yaml", *args],
            capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"NOTES.txt does not render: {result.stderr}")
        return yaml.safe_load(result.stdout)["notes"]


def of_kind(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs, kind):
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def workload(docs):
    """The hub's Deployment or StatefulSet (exactly one)."""
    found = [doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, f"expected one hub workload, found {[d['kind'] for d in found]}"
    return found[0]


def hub_container(docs):
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["hub"], containers
    return containers[0]


def env_of(container):
    return {item["name"]: item for item in container.get("env", [])}


def env_values(container):
    return {name: item.get("value") for name, item in env_of(container).items()}


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def hub_help():
    return subprocess.run([QUICKSILVER_BIN, "--help"], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def hub_settings():
    """Setting name -> help text, from `quicksilver --help`."""
    text = hub_help().split("Settings:", 1)[1]
    return dict(re.findall(r"^  ([a-z_]+) +(.*)$", text, re.M))


def test_pod(docs):
    pods = [doc for doc in of_kind(docs, "Pod")
            if doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1, "expected one helm test pod"
    return pods[0]


def pod_specs(docs):
    """(name, pod spec) of every pod the manifests make."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lint(unittest.TestCase):
    def test_the_required_values_files_exist(self):
        names = {path.name for path in ci_files()}
        self.assertLessEqual(REQUIRED_CI_FILES, names)

    def test_helm_lint_strict_with_every_values_file(self):
        for path in [None, *ci_files()]:
            with self.subTest(values=path and path.name):
                args = ["-f", str(path)] if path else []
                result = subprocess.run(
                    [HELM, "lint", str(CHART), "--strict", "--kube-version", OLDEST, *args],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_kube_version_below_the_declared_one_is_refused(self):
        major, minor, _ = OLDEST.split(".")
        older = f"{major}.{int(minor) - 1}.0"
        result = helm_template(kube_version=older)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("kubeVersion", result.stderr)

    def test_package_leaves_out_the_checks(self):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([HELM, "package", str(CHART), "--destination", tmp],
                           capture_output=True, text=True, check=True, timeout=60)
            (archive,) = Path(tmp).glob("*.tgz")
            names = subprocess.run(["tar", "tzf", str(archive)], capture_output=True, text=True,
                                   check=True).stdout.split()
        self.assertIn(f"{CHART.name}/templates/tests/publish-subscribe.yaml", names)
        self.assertIn(f"{CHART.name}/values.schema.json", names)
        self.assertFalse([n for n in names if n.startswith(f"{CHART.name}/tests/")])

    def test_no_repository_or_dependency(self):
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        self.assertNotIn("dependencies", chart)
        self.assertFalse((CHART / "charts").exists())


class Validate(unittest.TestCase):
    """kubernetes-validate, strict, on every manifest of every values file."""

    def test_every_manifest_against_the_oldest_and_newest_kubernetes(self):
        self.assertNotEqual(OLDEST, NEWEST)
        for path in ci_files():
            for version in (OLDEST, NEWEST):
                docs = render("-f", str(path), kube_version=version)
                self.assertTrue(docs)
                for doc in docs:
                    name = f"{path.name} {doc['kind']}/{doc['metadata']['name']} on {version}"
                    with self.subTest(name):
                        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
                            with self.assertRaises(kubernetes_validate.utils.SchemaNotFoundError):
                                kubernetes_validate.validate(doc, version, strict=True)
                        else:
                            try:
                                kubernetes_validate.validate(doc, version, strict=True)
                            except kubernetes_validate.utils.ValidationError as error:
                                path_ = ".".join(str(p) for p in error.path)
                                self.fail(f"{path_}: {error.message}")

    def test_strict_validation_catches_a_misplaced_field(self):
        # The validator really is strict: an unknown field in a Deployment fails.
        deployment = one(render(), "Deployment")
        broken = json.loads(json.dumps(deployment))
        broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
        with self.assertRaises(kubernetes_validate.utils.ValidationError):
            kubernetes_validate.validate(broken, OLDEST, strict=True)


class Defaults(unittest.TestCase):
    """Cluster mode as installed with no values."""

    def setUp(self):
        self.docs = render()

    def test_kinds(self):
        kinds = sorted(doc["kind"] for doc in self.docs)
        self.assertEqual(kinds, ["Deployment", "Pod", "PodDisruptionBudget", "Secret", "Service"])

    def test_three_replicas_on_nats_listening_on_every_interface(self):
        deployment = one(self.docs, "Deployment")
        self.assertEqual(deployment["spec"]["replicas"], 3)
        env = env_values(hub_container(self.docs))
        self.assertEqual(env["MERCURE_TRANSPORT"], "nats")
        self.assertEqual(env["MERCURE_NATS_URL"], "nats://nats:4222")
        self.assertEqual(env["MERCURE_NATS_REPLICAS"], "3")
        self.assertEqual(env["MERCURE_ADDR"], "0.0.0.0:8080")
        self.assertTrue(env["MERCURE_METRICS_ADDR"].startswith("0.0.0.0:"))

    def test_ports_match_the_hub_addresses(self):
        container = hub_container(self.docs)
        env = env_values(container)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        self.assertEqual(ports["http"], port_of(env["MERCURE_ADDR"]))
        self.assertEqual(ports["metrics"], port_of(env["MERCURE_METRICS_ADDR"]))
        self.assertNotEqual(ports["http"], ports["metrics"])
        service = one(self.docs, "Service")
        self.assertEqual([p["targetPort"] for p in service["spec"]["ports"]], ["http"],
                         "the hub Service must not expose the metrics port")

    def test_probes(self):
        container = hub_container(self.docs)
        liveness, readiness = container["livenessProbe"], container["readinessProbe"]
        self.assertEqual(liveness["httpGet"], {"path": "/healthz", "port": "http"})
        self.assertEqual(readiness["httpGet"], {"path": "/readyz", "port": "http"})
        self.assertNotIn("startupProbe", container)
        # Liveness tolerates a slow moment; readiness reacts within seconds.
        self.assertGreaterEqual(liveness["periodSeconds"] * liveness["failureThreshold"], 20)
        self.assertLessEqual(readiness["periodSeconds"] * readiness["failureThreshold"], 15)

    def test_rollout_never_lowers_capacity(self):
        deployment = one(self.docs, "Deployment")
        self.assertEqual(deployment["spec"]["strategy"]["type"], "RollingUpdate")
        self.assertEqual(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        self.assertGreaterEqual(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1)
        self.assertGreater(deployment["spec"]["minReadySeconds"], 0)

    def test_prestop_sleep_action_and_grace_period(self):
        spec = one(self.docs, "Deployment")["spec"]["template"]["spec"]
        container = hub_container(self.docs)
        self.assertEqual(container["lifecycle"]["preStop"], {"sleep": {"seconds": 10}})
        # Hub defaults: drain_timeout 20s, write_timeout 600s; preStop 10 + 20 + margin 10 = 40,
        # and at least write_timeout by default.
        self.assertEqual(spec["terminationGracePeriodSeconds"], 600)

    def test_pdb(self):
        pdb = one(self.docs, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertNotIn("minAvailable", pdb["spec"])
        self.assertEqual(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow")
        pod_labels = one(self.docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(pdb["spec"]["selector"]["matchLabels"].items(), pod_labels.items())

    def test_generated_key(self):
        secret = one(self.docs, "Secret")
        key = base64.b64decode(secret["data"]["jwt_key"]).decode()
        self.assertRegex(key, r"^[A-Za-z0-9]{64}$")
        ref = env_of(hub_container(self.docs))["MERCURE_JWT_KEY"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(ref, {"name": secret["metadata"]["name"], "key": "jwt_key"})

    def test_spread_and_anti_affinity(self):
        spec = one(self.docs, "Deployment")["spec"]["template"]["spec"]
        selector = one(self.docs, "Deployment")["spec"]["selector"]
        preferred = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(preferred[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
        self.assertEqual(preferred[0]["podAffinityTerm"]["labelSelector"], selector)
        (spread,) = spec["topologySpreadConstraints"]
        self.assertEqual(spread["topologyKey"], "topology.kubernetes.io/zone")
        self.assertEqual(spread["labelSelector"], selector)

    def test_labels(self):
        for doc in self.docs:
            labels = doc["metadata"]["labels"]
            for name in ("name", "instance", "version", "managed-by"):
                self.assertIn(f"app.kubernetes.io/{name}", labels, doc["metadata"]["name"])
            self.assertEqual(labels["app.kubernetes.io/instance"], RELEASE)
            self.assertIn("helm.sh/chart", labels)
        service = one(self.docs, "Service")
        pod_labels = one(self.docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(service["spec"]["selector"].items(), pod_labels.items())
        test_labels = test_pod(self.docs)["metadata"]["labels"]
        self.assertFalse(service["spec"]["selector"].items() <= test_labels.items(),
                         "the Service must not select the test pod")

    def test_secret_checksum_annotation_follows_the_secret(self):
        def checksum(docs):
            return workload(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        self.assertEqual(checksum(render()), checksum(render("--set", "logLevel=debug")))
        self.assertNotEqual(checksum(render()),
                            checksum(render("--set", "secret.jwt_key=another-key-of-32-bytes-or-more")))

    def test_no_service_account_token(self):
        for name, spec in pod_specs(self.docs):
            self.assertIs(spec["automountServiceAccountToken"], False, name)


class RestrictedPodSecurity(unittest.TestCase):
    """Every pod of every values file meets the restricted Pod Security Standard."""

    ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}

    def test_restricted(self):
        for path in ci_files():
            for name, spec in pod_specs(render("-f", str(path))):
                with self.subTest(f"{path.name} {name}"):
                    self.check(spec)

    def check(self, spec):
        pod = spec.get("securityContext", {})
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            self.assertFalse(spec.get(field, False))
        for volume in spec.get("volumes", []):
            self.assertLessEqual(set(volume) - {"name"}, self.ALLOWED_VOLUMES, volume)
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container.get("securityContext", {})
            self.assertFalse(context.get("privileged", False))
            self.assertIs(context.get("allowPrivilegeEscalation"), False)
            self.assertIs(context.get("readOnlyRootFilesystem"), True)
            self.assertIs(context.get("runAsNonRoot", pod.get("runAsNonRoot")), True)
            self.assertNotEqual(context.get("runAsUser", pod.get("runAsUser")), 0)
            self.assertIsNotNone(context.get("runAsUser", pod.get("runAsUser")),
                                 "a numeric user, so that runAsNonRoot can be verified")
            self.assertIn("ALL", context.get("capabilities", {}).get("drop", []))
            self.assertEqual(context.get("capabilities", {}).get("add", []), [])
            seccomp = context.get("seccompProfile", pod.get("seccompProfile", {}))
            self.assertEqual(seccomp.get("type"), "RuntimeDefault")
            for port in container.get("ports", []):
                self.assertNotIn("hostPort", port)


class GracePeriod(unittest.TestCase):
    """terminationGracePeriodSeconds against drain_timeout, write_timeout and the preStop pause."""

    def grace(self, *args):
        return workload(render(*args))["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    def test_covers_prestop_drain_and_margin(self):
        # write_timeout 0s (no limit) leaves preStop 10 + drain + margin 10.
        for drain, seconds in [("20s", 20), ("1m30s", 90), ("1.5m", 90), ("2m", 120),
                               ("500ms", 1), ("0s", 0), ("0", 0), ("1h", 3600)]:
            with self.subTest(drain=drain):
                self.assertEqual(
                    self.grace("--set-string", f"config.drain_timeout={drain}",
                               "--set-string", "config.write_timeout=0s"),
                    10 + seconds + 10)

    def test_at_least_write_timeout_by_default(self):
        self.assertEqual(self.grace("--set-string", "config.write_timeout=15m"), 900)
        self.assertEqual(self.grace("--set-string", "config.write_timeout=30s"), 40)

    def test_follows_prestop_and_margin(self):
        self.assertEqual(self.grace("--set-string", "config.write_timeout=0s",
                                    "--set", "shutdown.preStopSleepSeconds=3",
                                    "--set", "shutdown.marginSeconds=7"), 3 + 20 + 7)

    def test_explicit_value_is_kept_when_long_enough(self):
        self.assertEqual(self.grace("--set", "shutdown.terminationGracePeriodSeconds=40"), 40)
        self.assertEqual(self.grace("-f", str(CHART / "ci/ingress-values.yaml")), 120)
        # ingress-values: preStop 15 + drain 1m + margin 10 = 85 <= 120.

    def test_too_short_fails_with_the_sum(self):
        error = render_fails({"shutdown": {"terminationGracePeriodSeconds": 30}})
        self.assertIn("shutdown.terminationGracePeriodSeconds (30) is shorter than the pod needs "
                      "to stop: preStop sleep 10 s + drain_timeout 20 s + margin 10 s = 40 s",
                      error)
        error = render_fails({"config": {"drain_timeout": "2m"},
                              "shutdown": {"terminationGracePeriodSeconds": 100}})
        self.assertIn("drain_timeout 120 s", error)

    def test_no_prestop_hook_when_zero(self):
        container = hub_container(render("--set", "shutdown.preStopSleepSeconds=0"))
        self.assertNotIn("lifecycle", container)

    def test_unparseable_duration_fails_naming_the_setting(self):
        # The schema refuses it first...
        error = render_fails({"config": {"drain_timeout": "20 seconds"}})
        self.assertIn("drain_timeout", error)
        # ...and the template's own parser, should the schema be skipped.
        error = render_fails({"config": {"drain_timeout": "20 seconds"}},
                             "--skip-schema-validation")
        self.assertIn('config.drain_timeout: "20 seconds" is not a duration '
                      "(examples: 500ms, 40s, 1m30s, 0s)", error)
        error = render_fails({"config": {"write_timeout": "10x"}}, "--skip-schema-validation")
        self.assertIn('config.write_timeout: "10x" is not a duration', error)

    def test_chart_defaults_are_the_hub_defaults(self):
        # The chart computes with the hub's defaults when drain_timeout or write_timeout is unset.
        settings = hub_settings()
        self.assertIn("(default 20s)", settings["drain_timeout"])
        self.assertIn("(default 600s)", settings["write_timeout"])


class SingleNode(unittest.TestCase):
    def setUp(self):
        self.docs = render("-f", str(CHART / "ci/single-node-values.yaml"))

    def test_one_statefulset_pod_on_a_volume(self):
        kinds = {doc["kind"] for doc in self.docs}
        self.assertNotIn("Deployment", kinds)
        self.assertNotIn("HorizontalPodAutoscaler", kinds)
        self.assertNotIn("PodDisruptionBudget", kinds, "a PDB would block node drains")
        statefulset = one(self.docs, "StatefulSet")
        self.assertEqual(statefulset["spec"]["replicas"], 1)
        self.assertEqual(statefulset["spec"]["podManagementPolicy"], "OrderedReady")
        self.assertEqual(statefulset["spec"]["updateStrategy"]["type"], "RollingUpdate")
        headless = [s for s in of_kind(self.docs, "Service")
                    if s["metadata"]["name"] == statefulset["spec"]["serviceName"]]
        self.assertEqual(len(headless), 1)
        self.assertEqual(headless[0]["spec"]["clusterIP"], "None")
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        self.assertEqual(claim["spec"]["resources"]["requests"]["storage"], "20Gi")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        container = hub_container(self.docs)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(mounts[claim["metadata"]["name"]], "/var/lib/quicksilver")
        env = env_values(container)
        self.assertEqual(env["MERCURE_TRANSPORT"], "embedded")
        self.assertTrue(env["MERCURE_HISTORY_PATH"].startswith("/var/lib/quicksilver/"))
        self.assertNotIn("MERCURE_NATS_URL", env)

    def test_settings_are_rendered_as_the_hub_reads_them(self):
        env = env_values(hub_container(self.docs))
        self.assertEqual(env["MERCURE_HISTORY_SIZE"], "1000000")  # not 1e+06
        self.assertEqual(env["MERCURE_SUBSCRIPTIONS"], "true")
        self.assertEqual(env["MERCURE_CORS_ORIGINS"],
                         "https://app.example.com,https://admin.example.com")

    def test_existing_claim_and_no_persistence(self):
        docs = render("--set", "config.transport=embedded", "--set", "replicaCount=1",
                      "--set", "persistence.existingClaim=history")
        statefulset = one(docs, "StatefulSet")
        self.assertNotIn("volumeClaimTemplates", statefulset["spec"])
        volumes = statefulset["spec"]["template"]["spec"]["volumes"]
        self.assertEqual(volumes, [{"name": "data",
                                    "persistentVolumeClaim": {"claimName": "history"}}])
        docs = render("--set", "config.transport=embedded", "--set", "replicaCount=1",
                      "--set", "persistence.enabled=false")
        volumes = one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
        self.assertEqual(volumes, [{"name": "data", "emptyDir": {}}])

    def test_memory_transport_has_no_volume(self):
        docs = render("--set", "config.transport=memory", "--set", "replicaCount=1")
        statefulset = one(docs, "StatefulSet")
        self.assertNotIn("volumeClaimTemplates", statefulset["spec"])
        self.assertNotIn("volumeMounts", hub_container(docs))

    def test_network_policy_lets_no_nats_out(self):
        policy = one(self.docs, "NetworkPolicy")
        egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
        self.assertEqual(egress_ports, [53, 53])


class Ingress(unittest.TestCase):
    def setUp(self):
        self.docs = render("-f", str(CHART / "ci/ingress-values.yaml"))

    def test_sse_annotations(self):
        annotations = one(self.docs, "Ingress")["metadata"]["annotations"]
        self.assertEqual(annotations["nginx.ingress.kubernetes.io/proxy-buffering"], "off")
        heartbeat = 15  # ingress-values.yaml
        for name in ("proxy-read-timeout", "proxy-send-timeout"):
            self.assertGreater(int(annotations[f"nginx.ingress.kubernetes.io/{name}"]),
                               heartbeat * 4)
        self.assertEqual(annotations["haproxy.org/timeout-server"], "1h")
        self.assertEqual(annotations["haproxy-ingress.github.io/timeout-server"], "1h")
        self.assertEqual(annotations["cert-manager.io/cluster-issuer"], "letsencrypt")
        # The hub serves HTTPS (tls.secretName): ingress-nginx speaks HTTPS to it.
        self.assertEqual(annotations["nginx.ingress.kubernetes.io/backend-protocol"], "HTTPS")
        plain = one(render("--set", "ingress.enabled=true"), "Ingress")["metadata"]["annotations"]
        self.assertNotIn("nginx.ingress.kubernetes.io/backend-protocol", plain)

    def test_https_from_the_hub(self):
        container = hub_container(self.docs)
        env = env_values(container)
        self.assertEqual(env["MERCURE_CERT_FILE"], "/etc/quicksilver/tls/tls.crt")
        self.assertEqual(env["MERCURE_KEY_FILE"], "/etc/quicksilver/tls/tls.key")
        self.assertEqual(env["MERCURE_TRUSTED_PROXIES"], "10.0.0.0/8,fd00::/8")
        self.assertIn({"name": "tls", "mountPath": "/etc/quicksilver/tls", "readOnly": True},
                      container["volumeMounts"])
        volumes = workload(self.docs)["spec"]["template"]["spec"]["volumes"]
        self.assertIn({"name": "tls", "secret": {"secretName": "quicksilver-tls",
                                                 "defaultMode": 0o440}}, volumes)
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["httpGet"]["scheme"], "HTTPS")
        self.assertEqual(one(self.docs, "Service")["spec"]["ports"][0]["appProtocol"], "https")
        env = env_values(test_pod(self.docs)["spec"]["containers"][0])
        self.assertTrue(env["HUB_URL"].startswith("https://"))
        self.assertEqual(env["HUB_INSECURE"], "1")
        plain = hub_container(render())
        self.assertNotIn("scheme", plain["livenessProbe"]["httpGet"])

    def test_user_annotations_win_and_null_drops_one(self):
        docs = render_values({"ingress": {
            "enabled": True,
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "7200"},
            "sseAnnotations": {"haproxy.org/timeout-server": None}}})
        annotations = one(docs, "Ingress")["metadata"]["annotations"]
        self.assertEqual(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "7200")
        self.assertNotIn("haproxy.org/timeout-server", annotations)
        self.assertIn("nginx.ingress.kubernetes.io/proxy-buffering", annotations)

    def test_routes_the_hub_path_to_the_hub_port(self):
        ingress = one(self.docs, "Ingress")
        service = one(self.docs, "Service")
        (rule,) = ingress["spec"]["rules"]
        self.assertEqual(rule["host"], "mercure.example.com")
        (path,) = rule["http"]["paths"]
        self.assertEqual(path["path"], "/.well-known/mercure")
        self.assertEqual(path["backend"]["service"],
                         {"name": service["metadata"]["name"], "port": {"name": "http"}})
        self.assertEqual(ingress["spec"]["ingressClassName"], "nginx")
        self.assertEqual(ingress["spec"]["tls"][0]["secretName"], "mercure-example-com-tls")

    def test_network_policy_ports(self):
        policy = one(self.docs, "NetworkPolicy")
        selector = one(self.docs, "Deployment")["spec"]["selector"]
        self.assertEqual(policy["spec"]["podSelector"], selector)
        self.assertEqual(sorted(policy["spec"]["policyTypes"]), ["Egress", "Ingress"])
        http, metrics = policy["spec"]["ingress"]
        self.assertEqual(http["ports"], [{"port": "http", "protocol": "TCP"}])
        self.assertNotIn("from", http)
        self.assertEqual(metrics["ports"], [{"port": "metrics", "protocol": "TCP"}])
        self.assertEqual(metrics["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "monitoring"})
        dns, nats = policy["spec"]["egress"]
        self.assertEqual(sorted((p["port"], p["protocol"]) for p in dns["ports"]),
                         [(53, "TCP"), (53, "UDP")])
        self.assertEqual(nats["ports"], [{"port": 4222, "protocol": "TCP"}])
        self.assertEqual(nats["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                         "nats")
        # The named ports exist on the hub container.
        names = {port["name"] for port in hub_container(self.docs)["ports"]}
        self.assertLessEqual({"http", "metrics"}, names)


class GatewayApi(unittest.TestCase):
    def test_http_route(self):
        docs = render("-f", str(CHART / "ci/gateway-values.yaml"))
        route = one(docs, "HTTPRoute")
        service = one(docs, "Service")
        self.assertEqual(route["apiVersion"], "gateway.networking.k8s.io/v1")
        self.assertEqual(route["spec"]["parentRefs"],
                         [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}])
        self.assertEqual(route["spec"]["hostnames"], ["mercure.example.com"])
        (rule,) = route["spec"]["rules"]
        self.assertEqual(rule["matches"],
                         [{"path": {"type": "PathPrefix", "value": "/.well-known/mercure"}}])
        self.assertEqual(rule["backendRefs"], [{"name": service["metadata"]["name"],
                                                "port": service["spec"]["ports"][0]["port"]}])
        # "0s" turns the timeouts off: streams must not be cut.
        self.assertEqual(rule["timeouts"], {"request": "0s", "backendRequest": "0s"})
        self.assertNotIn("Ingress", {doc["kind"] for doc in docs})
        policy = one(docs, "NetworkPolicy")
        nats_rule = policy["spec"]["egress"][1]
        self.assertEqual(nats_rule["to"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "messaging"})


class AutoscalingAndMetrics(unittest.TestCase):
    def setUp(self):
        self.docs = render("-f", str(CHART / "ci/hpa-servicemonitor-values.yaml"))

    def test_hpa(self):
        hpa = one(self.docs, "HorizontalPodAutoscaler")
        deployment = one(self.docs, "Deployment")
        self.assertNotIn("replicas", deployment["spec"], "the HPA owns the replica count")
        self.assertEqual(hpa["spec"]["scaleTargetRef"], {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "name": deployment["metadata"]["name"]})
        self.assertEqual((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), (3, 20))
        cpu, subscribers = hpa["spec"]["metrics"]
        self.assertEqual(cpu["resource"]["name"], "cpu")
        self.assertEqual(cpu["resource"]["target"]["averageUtilization"], 60)
        self.assertEqual(subscribers["type"], "Pods")
        self.assertEqual(subscribers["pods"]["metric"]["name"], "mercure_subscribers_connected")
        self.assertEqual(subscribers["pods"]["target"]["averageValue"], "50000")
        self.assertGreaterEqual(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 300)

    def test_service_monitor_scrapes_the_metrics_port(self):
        monitor = one(self.docs, "ServiceMonitor")
        self.assertEqual(monitor["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")
        (endpoint,) = monitor["spec"]["endpoints"]
        self.assertEqual((endpoint["port"], endpoint["path"], endpoint["interval"]),
                         ("metrics", "/metrics", "15s"))
        self.assertEqual(monitor["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})
        services = [s for s in of_kind(self.docs, "Service")
                    if monitor["spec"]["selector"]["matchLabels"].items()
                    <= s["metadata"]["labels"].items()]
        self.assertEqual(len(services), 1, "the ServiceMonitor selects the metrics Service only")
        (port,) = services[0]["spec"]["ports"]
        self.assertEqual((port["name"], port["targetPort"]), ("metrics", "metrics"))
        pod_labels = one(self.docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(services[0]["spec"]["selector"].items(), pod_labels.items())
        env = env_values(hub_container(self.docs))
        self.assertEqual(port["port"], port_of(env["MERCURE_METRICS_ADDR"]))

    def test_hard_anti_affinity(self):
        affinity = one(self.docs, "Deployment")["spec"]["template"]["spec"]["affinity"]
        (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(term["topologyKey"], "kubernetes.io/hostname")


class ExistingSecret(unittest.TestCase):
    def setUp(self):
        self.docs = render("-f", str(CHART / "ci/existing-secret-values.yaml"))

    def test_reads_the_existing_secrets(self):
        self.assertEqual(of_kind(self.docs, "Secret"), [])
        env = env_of(hub_container(self.docs))
        for key in ("publisher_jwt_key", "subscriber_jwt_key", "nats_user", "nats_password"):
            self.assertEqual(env[f"MERCURE_{key.upper()}"]["valueFrom"]["secretKeyRef"],
                             {"name": "mercure-keys", "key": key})
        self.assertNotIn("MERCURE_JWT_KEY", env)
        self.assertEqual(env["MERCURE_NATS_TLS_CA"]["value"], "/etc/quicksilver/nats/ca.crt")
        spec = workload(self.docs)["spec"]["template"]["spec"]
        self.assertIn({"name": "nats-files", "secret": {"secretName": "nats-ca",
                                                        "defaultMode": 0o440}}, spec["volumes"])
        self.assertIn({"name": "nats-files", "mountPath": "/etc/quicksilver/nats",
                       "readOnly": True}, hub_container(self.docs)["volumeMounts"])

    def test_full_name_override(self):
        for doc in self.docs:
            self.assertTrue(doc["metadata"]["name"].startswith("mercure"), doc["metadata"])

    def test_test_pod_takes_tokens_from_its_secret(self):
        env = env_of(test_pod(self.docs)["spec"]["containers"][0])
        self.assertEqual(env["PUBLISHER_TOKEN"]["valueFrom"]["secretKeyRef"],
                         {"name": "mercure-test-tokens", "key": "publisher_token"})
        self.assertNotIn("JWT_KEY", env)


class Names(unittest.TestCase):
    def test_name_override(self):
        docs = render("--set", "nameOverride=mercure-hub")
        deployment = one(docs, "Deployment")
        self.assertEqual(deployment["metadata"]["name"], f"{RELEASE}-mercure-hub")
        self.assertEqual(deployment["metadata"]["labels"]["app.kubernetes.io/name"], "mercure-hub")

    def test_image_tag_defaults_to_app_version(self):
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        self.assertEqual(hub_container(render())["image"], f"quicksilver:{chart['appVersion']}")
        docs = render("--set", "image.repository=registry.example.com/quicksilver",
                      "--set", "image.tag=1.2.3", "--set", "imagePullSecrets[0]=registry")
        self.assertEqual(hub_container(docs)["image"], "registry.example.com/quicksilver:1.2.3")
        self.assertEqual(workload(docs)["spec"]["template"]["spec"]["imagePullSecrets"],
                         [{"name": "registry"}])

    def test_extra_env(self):
        docs = render_values({"extraEnv": [
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector:4318"}]})
        self.assertEqual(env_values(hub_container(docs))["OTEL_EXPORTER_OTLP_ENDPOINT"],
                         "http://otel-collector:4318")


class InvalidValues(unittest.TestCase):
    """Values that cannot work fail to render, with a message saying what to change."""

    def test_unknown_top_level_key(self):
        error = render_fails({"replicas": 3})
        self.assertIn("additional properties 'replicas' not allowed", error)

    def test_unknown_setting_in_config(self):
        error = render_fails({"config": {"transport": "nats", "nats_urls": "nats://nats:4222"}})
        self.assertIn("additional properties 'nats_urls' not allowed", error)
        # A secret in config is refused: it belongs in the Secret.
        error = render_fails({"config": {"transport": "nats", "jwt_key": "secret"}})
        self.assertIn("additional properties 'jwt_key' not allowed", error)

    def test_wrong_types(self):
        error = render_fails({"replicaCount": "three"})
        self.assertIn("replicaCount", error)
        self.assertIn("want integer", error)
        error = render_fails({"config": {"transport": "nats", "subscriptions": "maybe"}})
        self.assertIn("subscriptions", error)
        error = render_fails({"config": {"transport": "rabbitmq"}})
        self.assertIn("transport", error)

    def test_zero_replicas(self):
        error = render_fails({"replicaCount": 0})
        self.assertIn("replicaCount", error)
        self.assertIn("minimum: got 0, want 1", error)

    def test_single_node_with_three_replicas(self):
        error = render_fails({"config": {"transport": "embedded"}, "replicaCount": 3})
        self.assertIn("replicaCount is 3, but config.transport embedded is single-node mode, "
                      "which runs exactly one replica", error)

    def test_single_node_with_autoscaling(self):
        error = render_fails({"config": {"transport": "embedded"}, "replicaCount": 1,
                              "autoscaling": {"enabled": True}})
        self.assertIn("autoscaling.enabled needs config.transport nats", error)

    def test_grace_period_shorter_than_the_drain(self):
        error = render_fails({"config": {"drain_timeout": "60s"},
                              "shutdown": {"terminationGracePeriodSeconds": 45}})
        self.assertIn("shutdown.terminationGracePeriodSeconds (45) is shorter than the pod needs "
                      "to stop", error)

    def test_other_refusals(self):
        cases = [
            ({"extraEnv": [{"name": "MERCURE_HEARTBEAT", "value": "10s"}]},
             "extraEnv: MERCURE_HEARTBEAT is a hub setting: put it in config as heartbeat"),
            ({"secret": {"existingSecret": "keys", "existingSecretKeys": ["nats_token"]}},
             "secret.existingSecretKeys must include jwt_key or publisher_jwt_key"),
            ({"natsFiles": {"tlsCa": "ca.crt"}}, "natsFiles: creds, tlsCa, tlsCert and tlsKey"),
            ({"natsFiles": {"secretName": "tls", "tlsCert": "tls.crt"}},
             "natsFiles: tlsCert and tlsKey go together"),
            ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}},
             "autoscaling.minReplicas (5) is above autoscaling.maxReplicas (3)"),
            ({"podDisruptionBudget": {"minAvailable": 2}},
             "podDisruptionBudget: set maxUnavailable or minAvailable, not both"),
            ({"config": {"transport": "nats", "publisher_jwt_alg": "RS256"}},
             "tests: the helm test pod signs HS256 tokens itself, and the publisher key is RS256"),
        ]
        for values, message in cases:
            with self.subTest(values=values):
                self.assertIn(message, render_fails(values))


class HubAcceptsTheEnvironment(unittest.TestCase):
    """`quicksilver --check-config` accepts the environment of every rendered hub container."""

    def image_env(self):
        """MERCURE_* variables the Dockerfile sets (the container starts with them)."""
        dockerfile = (REPO / "Dockerfile").read_text()
        env = {}
        for instruction in re.findall(r"^ENV (.*?)(?<!\\)$", dockerfile, re.M | re.S):
            env.update(re.findall(r"(MERCURE_[A-Z_]+)=(\S+)", instruction))
        self.assertIn("MERCURE_ADDR", env)
        return env

    def placeholder(self, key, config):
        """A plausible value for a Secret key the hub reads."""
        if key.endswith("jwt_key"):
            role = key.removesuffix("jwt_key")
            alg = str(config.get(f"{role}jwt_alg") or config.get("jwt_alg") or "HS256")
            if alg in PUBLIC_KEY_FIXTURES:
                return (JWT_FIXTURES / PUBLIC_KEY_FIXTURES[alg]).read_text()
            return "a-placeholder-secret-key-of-more-than-32-bytes"
        return {"nats_user": "quicksilver", "nats_password": "password",
                "nats_token": "token"}[key]

    def environment(self, container, values):
        config = values.get("config", {})
        env = self.image_env()
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                key = item["valueFrom"]["secretKeyRef"]["key"]
                env[item["name"]] = self.placeholder(key, config)
        return env

    def check_config(self, env):
        # Nothing else of this process's environment: no stray MERCURE_* variable.
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        return subprocess.run([QUICKSILVER_BIN, "--check-config"], env=clean,
                              capture_output=True, text=True, timeout=30)

    def test_every_values_file(self):
        for path in ci_files():
            values = yaml.safe_load(path.read_text()) or {}
            docs = render("-f", str(path))
            with self.subTest(values=path.name):
                result = self.check_config(self.environment(hub_container(docs), values))
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn("configuration is valid", result.stdout)
                # A key is always configured: no hub makes a development key of its own.
                self.assertNotIn("warning", result.stderr)

    def test_the_check_can_fail(self):
        env = self.environment(hub_container(render()), {})
        bad = self.check_config({**env, "MERCURE_NATS_URLS": "nats://nats:4222"})
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("nats_urls", bad.stdout + bad.stderr)
        keyless = {k: v for k, v in env.items() if k != "MERCURE_JWT_KEY"}
        self.assertIn("warning", self.check_config(keyless).stderr)

    def test_config_accepts_exactly_the_hub_settings(self):
        schema = json.loads((CHART / "values.schema.json").read_text())
        config = schema["properties"]["config"]
        self.assertIs(config["additionalProperties"], False)
        allowed = set(config["properties"])
        hub = set(hub_settings())
        self.assertEqual(allowed | CHART_MANAGED_SETTINGS, hub,
                         "values.schema.json's config and the hub's settings differ")
        self.assertFalse(allowed & CHART_MANAGED_SETTINGS)

    def test_chart_managed_settings_are_set_by_the_chart(self):
        seen = set()
        for path in ci_files():
            for item in hub_container(render("-f", str(path)))["env"]:
                if item["name"].startswith("MERCURE_"):
                    seen.add(item["name"].removeprefix("MERCURE_").lower())
        seen |= {item["name"].removeprefix("MERCURE_").lower()
                 for item in hub_container(render_values({
                     "secret": {"jwt_key": "k" * 40, "nats_token": "t"},
                     "natsFiles": {"secretName": "nats-files", "creds": "a.creds",
                                   "tlsCert": "tls.crt", "tlsKey": "tls.key"}}))["env"]}
        self.assertLessEqual(CHART_MANAGED_SETTINGS, seen)


class HelmTestScript(unittest.TestCase):
    """The helm test pod's script, run against a real hub on loopback."""

    @classmethod
    def setUpClass(cls):
        cls.script = test_pod(render())["spec"]["containers"][0]["command"][2]
        cls.hubs = []

    @classmethod
    def tearDownClass(cls):
        for hub in cls.hubs:
            hub.terminate()
            hub.wait(timeout=30)

    def start_hub(self, env):
        port = free_port()
        hub = subprocess.Popen(
            [QUICKSILVER_BIN],
            env={"PATH": os.environ.get("PATH", ""), "MERCURE_ADDR": f"127.0.0.1:{port}",
                 "MERCURE_TRANSPORT": "memory", "RUST_LOG": "warn", **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.hubs.append(hub)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                self.assertIsNone(hub.poll(), "the hub exited")
                self.assertLess(time.monotonic(), deadline, "the hub did not turn ready")
                time.sleep(0.1)
        return f"http://127.0.0.1:{port}/.well-known/mercure"

    def shells(self):
        """(name, argv prefix, PATH) of the shells to run the script with: the system's sh,
        and BusyBox with its own applets first on PATH, as in the test image."""
        yield "sh", ["sh"], os.environ.get("PATH", "")
        busybox = os.environ.get("BUSYBOX")
        if busybox:
            applets = Path(tempfile.mkdtemp(prefix="busybox-"))
            self.addCleanup(shutil.rmtree, applets)
            for applet in ("sh", "od", "tr", "cut", "base64", "sha256sum", "date", "sleep",
                           "grep", "cat"):
                (applets / applet).symlink_to(busybox)
            yield "busybox", [str(applets / "sh")], f"{applets}:{os.environ.get('PATH', '')}"

    def run_script(self, shell, path, env):
        with tempfile.TemporaryDirectory() as tmp:
            # The pod mounts an emptyDir on /tmp; here, a directory of the test's own.
            script = self.script.replace("/tmp/", f"{tmp}/")
            return subprocess.run([*shell, "-c", script],
                                  env={"PATH": path, **env},
                                  capture_output=True, text=True, timeout=150)

    def test_publishes_and_receives_with_one_key(self):
        key = "a-test-key-of-forty-bytes-for-the-helm-script"
        url = self.start_hub({"MERCURE_JWT_KEY": key})
        for name, shell, path in self.shells():
            with self.subTest(shell=name):
                result = self.run_script(shell, path, {
                    "HUB_URL": url, "TOPIC": "https://quicksilver.test/helm-test",
                    "JWT_KEY": key})
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn("received the update urn:uuid:", result.stdout)

    def test_publisher_and_subscriber_keys_longer_than_a_block(self):
        publisher = "p" * 100  # above SHA-256's 64-byte block: hashed first (RFC 2104)
        subscriber = "s" * 64
        url = self.start_hub({"MERCURE_PUBLISHER_JWT_KEY": publisher,
                              "MERCURE_SUBSCRIBER_JWT_KEY": subscriber})
        for name, shell, path in self.shells():
            with self.subTest(shell=name):
                result = self.run_script(shell, path, {
                    "HUB_URL": url, "TOPIC": "https://quicksilver.test/helm-test",
                    "PUBLISHER_JWT_KEY": publisher, "SUBSCRIBER_JWT_KEY": subscriber})
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    @unittest.skipUnless(shutil.which("openssl") and shutil.which("bash"), "needs openssl, bash")
    def test_the_notes_token_recipe(self):
        # The functions NOTES.txt gives sign a token the hub accepts.
        notes = render_notes()
        functions = notes[notes.index("b64url() {"):notes.index("     PUBLISHER_TOKEN=")]
        key = "a-key-for-the-notes-recipe-of-more-than-32-bytes"
        for alg in ("HS256", "HS512"):
            with self.subTest(alg=alg):
                url = self.start_hub({"MERCURE_JWT_KEY": key, "MERCURE_JWT_ALG": alg})
                token = subprocess.run(
                    ["bash", "-c", functions + 'token "$ALG" "$KEY" \'{"mercure":{"publish":["*"]}}\''],
                    env={"PATH": os.environ.get("PATH", ""), "KEY": key, "ALG": alg},
                    capture_output=True, text=True, check=True, timeout=30).stdout.strip()
                request = urllib.request.Request(
                    url, data=b"topic=https://example.com/books/1&data=hello",
                    headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.assertEqual(response.status, 200)

    def test_fails_with_a_wrong_key(self):
        url = self.start_hub({"MERCURE_JWT_KEY": "the-right-key-of-more-than-32-bytes-long"})
        for name, shell, path in self.shells():
            with self.subTest(shell=name):
                result = self.run_script(shell, path, {
                    "HUB_URL": url, "TOPIC": "https://quicksilver.test/helm-test",
                    "JWT_KEY": "a-wrong-key-of-more-than-32-bytes-long"})
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("FAIL: the subscription failed", result.stderr)


class Notes(unittest.TestCase):
    def test_every_values_file(self):
        for path in ci_files():
            with self.subTest(values=path.name):
                notes = render_notes("-f", str(path))
                self.assertIn(f"kubectl -n {NAMESPACE}", notes)
                self.assertIn(f"helm test -n {NAMESPACE} {RELEASE}", notes)
                self.assertIn("SUBSCRIBER_TOKEN=", notes)
                self.assertIn('curl -N -H "Authorization: Bearer $SUBSCRIBER_TOKEN"', notes)

    def test_modes(self):
        self.assertIn("every hub turns unready", render_notes())
        self.assertIn("deployment/qs-quicksilver", render_notes())
        single = render_notes("-f", str(CHART / "ci/single-node-values.yaml"))
        self.assertIn("statefulset/qs-quicksilver", single)
        self.assertNotIn("NATS", single)
        ingress = render_notes("-f", str(CHART / "ci/ingress-values.yaml"))
        self.assertIn("HUB=https://mercure.example.com/.well-known/mercure", ingress)

    def test_public_keys_are_not_used_as_hmac_secrets(self):
        notes = render_notes("-f", str(CHART / "ci/existing-secret-values.yaml"))
        self.assertIn("signed (RS256) with the private key of the public key in "
                      "publisher_jwt_key", notes)
        self.assertIn("jsonpath='{.data.subscriber_jwt_key}'", notes)
        self.assertNotIn("jsonpath='{.data.publisher_jwt_key}'", notes)


class Documentation(unittest.TestCase):
    def leaf_paths(self, values, prefix=""):
        """Dotted paths of values.yaml down to the values a user sets as a whole (maps of free
        keys, lists and scalars)."""
        free_maps = {"config", "resources", "podSecurityContext", "securityContext",
                     "updateStrategy", "affinity", "nodeSelector", "podAnnotations", "podLabels",
                     "annotations", "labels", "sseAnnotations", "behavior", "timeouts"}
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and key not in free_maps and value:
                yield from self.leaf_paths(value, f"{path}.")
            else:
                yield path

    def test_every_value_is_in_the_chart_readme(self):
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        readme = (CHART / "README.md").read_text()
        documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
        missing = [path for path in self.leaf_paths(values) if path not in documented]
        self.assertEqual(missing, [], "values without a row in the chart's README.md")
        # Rows below a value set as a whole (config.transport) are welcome too.
        unknown = [path for path in documented
                   if not any(p == path or p.startswith(path + ".") or path.startswith(p + ".")
                              for p in self.leaf_paths(values))]
        self.assertEqual(unknown, [], "README.md rows for values that do not exist")

    def test_every_value_is_in_the_schema(self):
        schema = json.loads((CHART / "values.schema.json").read_text())

        def walk(values, node, path):
            self.assertIs(node.get("additionalProperties"), False, path or "top level")
            for key, value in values.items():
                self.assertIn(key, node["properties"], f"{path}{key}")
                child = node["properties"][key]
                if isinstance(value, dict) and child.get("properties") is not None \
                        and key != "config":
                    walk(value, child, f"{path}{key}.")

        walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = {getattr(test, "test_case", test).id() for test, _ in result.failures + result.errors}
    passed = result.testsRun - len(failed) - len(result.skipped)
    print(f"chart: {passed} passed, {len(failed)} failed")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
