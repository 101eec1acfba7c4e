{{/*
Helpers of the Quicksilver chart: names and labels, the hub's environment, duration parsing,
the termination grace period, and the checks that refuse values which cannot work.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "quicksilver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name, followed by the chart
name unless the release name already contains it. 63 characters at most (DNS labels).
*/}}
{{- define "quicksilver.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "quicksilver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "quicksilver.labels" -}}
helm.sh/chart: {{ include "quicksilver.chart" . }}
{{ include "quicksilver.instanceLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quicksilver
{{- end }}

{{/* Labels naming this release of the chart. */}}
{{- define "quicksilver.instanceLabels" -}}
app.kubernetes.io/name: {{ include "quicksilver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the hub pods (Services, PDB, NetworkPolicy, spread constraints). The component
keeps the helm test pod and the metrics Service apart.
*/}}
{{- define "quicksilver.selectorLabels" -}}
{{ include "quicksilver.instanceLabels" . }}
app.kubernetes.io/component: hub
{{- end }}

{{/* The hub image, its tag defaulting to the chart's appVersion. */}}
{{- define "quicksilver.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The hub's transport: config.transport, or the hub's default. */}}
{{- define "quicksilver.transport" -}}
{{- .Values.config.transport | default "embedded" | toString }}
{{- end }}

{{/* "true" in cluster mode (transport nats), "" in single-node mode (embedded or memory). */}}
{{- define "quicksilver.clusterMode" -}}
{{- if eq (include "quicksilver.transport" .) "nats" }}true{{ end }}
{{- end }}

{{/* "true" when the hub keeps its history in a file (transport embedded). */}}
{{- define "quicksilver.embedded" -}}
{{- if eq (include "quicksilver.transport" .) "embedded" }}true{{ end }}
{{- end }}

{{/* The Secret holding the keys and NATS credentials: the existing one, or the chart's. */}}
{{- define "quicksilver.secretName" -}}
{{- .Values.secret.existingSecret | default (include "quicksilver.fullname" .) }}
{{- end }}

{{/*
The keys of that Secret, comma separated. For the chart's Secret: the non-empty values, plus
jwt_key when no publisher key is given (it is then generated).
*/}}
{{- define "quicksilver.secretKeys" -}}
{{- if .Values.secret.existingSecret }}
{{- join "," .Values.secret.existingSecretKeys }}
{{- else }}
{{- $keys := list }}
{{- range $key := list "jwt_key" "publisher_jwt_key" "subscriber_jwt_key" "nats_user" "nats_password" "nats_token" }}
{{- if or (get $.Values.secret $key) (and (eq $key "jwt_key") (not $.Values.secret.publisher_jwt_key)) }}
{{- $keys = append $keys $key }}
{{- end }}
{{- end }}
{{- join "," $keys }}
{{- end }}
{{- end }}

{{/*
A setting's value as the hub reads it from its environment. Helm reads numbers of values files
as floats (100000 would print as 1e+05), so whole numbers are printed as integers; lists (origins)
are joined with commas.
*/}}
{{- define "quicksilver.settingValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "map" . }}
{{- toJson . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- printf "%d" (int64 .) }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
A hub duration ("500ms", "40s", "1m30s", "1.5h", "0") in whole seconds, rounded up. Takes
(dict "key" setting-name "value" text); fails, naming the setting, on text the hub would refuse.
*/}}
{{- define "quicksilver.durationSeconds" -}}
{{- $text := toString .value | trim }}
{{- if eq $text "0" }}
{{- 0 }}
{{- else }}
{{- $parts := regexFindAll "([0-9]+[.]?[0-9]*|[.][0-9]+)(ns|us|µs|ms|s|m|h)" $text -1 }}
{{- if or (not $parts) (ne (join "" $parts) $text) }}
{{- fail (printf "config.%s: %q is not a duration (examples: 500ms, 40s, 1m30s, 0s)" .key $text) }}
{{- end }}
{{- $seconds := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range $parts }}
{{- $number := regexFind "^([0-9]+[.]?[0-9]*|[.][0-9]+)" . }}
{{- $total = addf $total (mulf (float64 $number) (get $seconds (trimPrefix $number .))) }}
{{- end }}
{{- ceil $total | int64 }}
{{- end }}
{{- end }}

{{/* drain_timeout in seconds; the hub's default is 20s. */}}
{{- define "quicksilver.drainSeconds" -}}
{{- include "quicksilver.durationSeconds" (dict "key" "drain_timeout" "value" (.Values.config.drain_timeout | default "20s")) }}
{{- end }}

{{/* write_timeout in seconds (0: streams live for ever); the hub's default is 600s. */}}
{{- define "quicksilver.writeSeconds" -}}
{{- include "quicksilver.durationSeconds" (dict "key" "write_timeout" "value" (.Values.config.write_timeout | default "600s")) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: it must cover the preStop pause, the drain and the margin; when
not given, it is also at least write_timeout.
*/}}
{{- define "quicksilver.terminationGracePeriodSeconds" -}}
{{- $preStop := int64 .Values.shutdown.preStopSleepSeconds }}
{{- $drain := include "quicksilver.drainSeconds" . | int64 }}
{{- $margin := int64 .Values.shutdown.marginSeconds }}
{{- $needed := add $preStop $drain $margin }}
{{- $given := .Values.shutdown.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $given }}
{{- max $needed (include "quicksilver.writeSeconds" . | int64) }}
{{- else if lt (int64 $given) $needed }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) is shorter than the pod needs to stop: preStop sleep %d s + drain_timeout %d s + margin %d s = %d s. Raise it, or lower config.drain_timeout or shutdown.preStopSleepSeconds" (int64 $given) $preStop $drain $margin $needed) }}
{{- else }}
{{- int64 $given }}
{{- end }}
{{- end }}

{{/*
The hub container's environment: settings from `config`, the addresses and paths the chart owns,
secrets from the Secret, and RUST_LOG.
*/}}
{{- define "quicksilver.env" -}}
- name: MERCURE_ADDR
  value: {{ printf "0.0.0.0:%d" (int64 .Values.service.port) | quote }}
- name: MERCURE_METRICS_ADDR
  value: {{ printf "0.0.0.0:%d" (int64 .Values.metrics.port) | quote }}
{{- $cluster := include "quicksilver.clusterMode" . }}
{{- range $key, $value := .Values.config }}
{{- /* The NATS settings of the defaults mean nothing in single-node mode. */}}
{{- if and (not (kindIs "invalid" $value)) (or $cluster (not (hasPrefix "nats_" $key))) }}
- name: {{ printf "MERCURE_%s" (upper $key) }}
  value: {{ include "quicksilver.settingValue" $value | quote }}
{{- end }}
{{- end }}
{{- if include "quicksilver.embedded" . }}
- name: MERCURE_HISTORY_PATH
  value: /var/lib/quicksilver/quicksilver.redb
{{- end }}
{{- $secret := include "quicksilver.secretName" . }}
{{- range $key := splitList "," (include "quicksilver.secretKeys" .) }}
- name: {{ printf "MERCURE_%s" (upper $key) }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- with .Values.natsFiles }}
{{- range $setting, $file := dict "nats_creds" .creds "nats_tls_ca" .tlsCa "nats_tls_cert" .tlsCert "nats_tls_key" .tlsKey }}
{{- if $file }}
- name: {{ printf "MERCURE_%s" (upper $setting) }}
  value: {{ printf "/etc/quicksilver/nats/%s" $file | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.tls.secretName }}
- name: MERCURE_CERT_FILE
  value: /etc/quicksilver/tls/tls.crt
- name: MERCURE_KEY_FILE
  value: /etc/quicksilver/tls/tls.key
{{- end }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels selecting the hub pods, as a labelSelector. */}}
{{- define "quicksilver.podLabelSelector" -}}
matchLabels:
  {{- include "quicksilver.selectorLabels" . | nindent 2 }}
{{- end }}

{{/*
The hub pod template, shared by the Deployment (cluster mode) and the StatefulSet (single-node
mode).
*/}}
{{- define "quicksilver.podTemplate" -}}
metadata:
  labels:
    {{- include "quicksilver.labels" . | nindent 4 }}
    app.kubernetes.io/component: hub
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Pods roll when the Secret's values (or the Secret they name) change.
    checksum/secret: {{ list .Values.secret .Values.natsFiles .Values.tls | toJson | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  # The hub never talks to the Kubernetes API.
  automountServiceAccountToken: false
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ include "quicksilver.terminationGracePeriodSeconds" . }}
  containers:
    - name: hub
      image: {{ include "quicksilver.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .Values.service.port }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
      env:
        {{- include "quicksilver.env" . | nindent 8 }}
      # Liveness never depends on NATS: /healthz answers as long as the process serves HTTP.
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
          {{- if .Values.tls.secretName }}
          scheme: HTTPS
          {{- end }}
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      # Readiness: 503 during a NATS outage and from SIGTERM on; open streams are kept.
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
          {{- if .Values.tls.secretName }}
          scheme: HTTPS
          {{- end }}
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      {{- if gt (int64 .Values.shutdown.preStopSleepSeconds) 0 }}
      lifecycle:
        # Serve on while the endpoints controller, kube-proxy and the ingress controller drop
        # this pod; then SIGTERM starts the drain.
        preStop:
          sleep:
            seconds: {{ .Values.shutdown.preStopSleepSeconds }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- $embedded := include "quicksilver.embedded" . }}
      {{- if or $embedded .Values.natsFiles.secretName .Values.tls.secretName }}
      volumeMounts:
        {{- if $embedded }}
        - name: data
          mountPath: /var/lib/quicksilver
        {{- end }}
        {{- if .Values.natsFiles.secretName }}
        - name: nats-files
          mountPath: /etc/quicksilver/nats
          readOnly: true
        {{- end }}
        {{- if .Values.tls.secretName }}
        # The whole directory, not subPaths: renewed files then appear in the pod.
        - name: tls
          mountPath: /etc/quicksilver/tls
          readOnly: true
        {{- end }}
      {{- end }}
  {{- $volumes := list }}
  {{- if and $embedded (not .Values.persistence.enabled) }}
  {{- $volumes = append $volumes (dict "name" "data" "emptyDir" dict) }}
  {{- else if and $embedded .Values.persistence.existingClaim }}
  {{- $volumes = append $volumes (dict "name" "data" "persistentVolumeClaim" (dict "claimName" .Values.persistence.existingClaim)) }}
  {{- end }}
  {{- with .Values.natsFiles.secretName }}
  {{- $volumes = append $volumes (dict "name" "nats-files" "secret" (dict "secretName" . "defaultMode" 288)) }}
  {{- end }}
  {{- with .Values.tls.secretName }}
  {{- $volumes = append $volumes (dict "name" "tls" "secret" (dict "secretName" . "defaultMode" 288)) }}
  {{- end }}
  {{- with $volumes }}
  volumes:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if eq .Values.podAntiAffinity "soft" }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              {{- include "quicksilver.podLabelSelector" . | nindent 14 }}
  {{- else if eq .Values.podAntiAffinity "hard" }}
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            {{- include "quicksilver.podLabelSelector" . | nindent 12 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range . }}
    {{- $constraint := deepCopy . }}
    {{- if not (hasKey $constraint "labelSelector") }}
    {{- $_ := set $constraint "labelSelector" (include "quicksilver.podLabelSelector" $ | fromYaml) }}
    {{- end }}
    - {{ toYaml $constraint | nindent 6 | trim }}
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Refuses values that render but cannot work, with a message that says what to change. Included
by every template that depends on them.
*/}}
{{- define "quicksilver.validate" -}}
{{- $cluster := include "quicksilver.clusterMode" . }}
{{- if not $cluster }}
{{- if ne (int64 .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount is %d, but config.transport %s is single-node mode, which runs exactly one replica (its history is one file on one volume). Set replicaCount to 1, or use config.transport nats for several nodes" (int64 .Values.replicaCount) (include "quicksilver.transport" .)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail (printf "autoscaling.enabled needs config.transport nats: config.transport %s is single-node mode, exactly one replica" (include "quicksilver.transport" .)) }}
{{- end }}
{{- else }}
{{- if not .Values.config.nats_url }}
{{- fail "config.nats_url is required with config.transport nats: the URLs of the NATS servers, e.g. nats://nats:4222" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int64 .Values.autoscaling.minReplicas) (int64 .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int64 .Values.autoscaling.minReplicas) (int64 .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" .Values.autoscaling.targetSubscribersPerPod) }}
{{- fail "autoscaling.enabled needs a metric: autoscaling.targetCPUUtilizationPercentage, autoscaling.targetSubscribersPerPod, or both" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) }}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both (set the other to null)" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if hasPrefix "MERCURE_" (toString .name) }}
{{- fail (printf "extraEnv: %s is a hub setting: put it in config as %s" .name (lower (trimPrefix "MERCURE_" .name))) }}
{{- end }}
{{- end }}
{{- $keys := splitList "," (include "quicksilver.secretKeys" .) }}
{{- if and .Values.secret.existingSecret (not (has "jwt_key" $keys)) (not (has "publisher_jwt_key" $keys)) }}
{{- fail (printf "secret.existingSecretKeys must include jwt_key or publisher_jwt_key: without a key every hub would make its own development key (Secret %s)" .Values.secret.existingSecret) }}
{{- end }}
{{- with .Values.natsFiles }}
{{- if and (not .secretName) (or .creds .tlsCa .tlsCert .tlsKey) }}
{{- fail "natsFiles: creds, tlsCa, tlsCert and tlsKey are keys of the Secret natsFiles.secretName, which is empty" }}
{{- end }}
{{- if ne (empty .tlsCert) (empty .tlsKey) }}
{{- fail "natsFiles: tlsCert and tlsKey go together (a client certificate and its key)" }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" }}
{{- end }}
{{- if and .Values.tests.enabled (not .Values.tests.tokensSecret) }}
{{- $jwtAlg := .Values.config.jwt_alg | default "HS256" | toString }}
{{- range $role := list "publisher" "subscriber" }}
{{- $alg := get $.Values.config (printf "%s_jwt_alg" $role) | default $jwtAlg | toString }}
{{- if ne $alg "HS256" }}
{{- fail (printf "tests: the helm test pod signs HS256 tokens itself, and the %s key is %s. Set tests.tokensSecret (a Secret with publisher_token and subscriber_token), or tests.enabled=false" $role $alg) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
