{{/*
relay.highThroughput runs Serve's HAProxy as the HTTP ingress of every Ray pod (head and workers:
Serve's proxies run on every node). Serve renders HAProxy's config with no request timeout
(`timeout client 3600s`, no `timeout http-request`: half-sent requests could hold its 4096
connections) and its stats page and exporter on every interface, so HAProxy starts through the
wrapper `mnemos up` uses (mnemos/cradle/_haproxy.py), which rewrites that config first:
the init container `haproxy` runs the image's `mnemos.cradle._haproxy.install` into an emptyDir
(the errorfiles and `bin/haproxy`), which the Ray container mounts read-only at the same path, and
RAY_SERVE_HAPROXY_BINARY_PATH names the wrapper. The image is the same, so the Python, the module
and the real binary the wrapper names are there too. A RAY_SERVE_HAPROXY_BINARY_PATH in
kuberay.env names the binary the wrapper runs (given to the init container, not the Ray container).
The same shape as mnemos.kuberay renders from Python (mnemos/kuberay/_haproxy.py).
*/}}

{{/* "true" when the Ray pods start HAProxy through the wrapper (relay.highThroughput), else empty. */}}
{{- define "mnemos.haproxy" -}}
{{- if .Values.relay.highThroughput }}true{{ end -}}
{{- end -}}

{{- define "mnemos.haproxyEnv" -}}
- name: RAY_SERVE_HAPROXY_BINARY_PATH
  value: /mnemos/haproxy/bin/haproxy
{{- end -}}

{{- define "mnemos.haproxyMount" -}}
- name: haproxy
  mountPath: /mnemos/haproxy
  readOnly: true
{{- end -}}

{{/* A few kilobytes of scripts and errorfiles, written once when the pod starts. */}}
{{- define "mnemos.haproxyVolume" -}}
- name: haproxy
  emptyDir:
    sizeLimit: 1Mi
{{- end -}}

{{- define "mnemos.haproxyInitContainer" -}}
- name: haproxy
  image: {{ include "mnemos.image" . }}
  imagePullPolicy: {{ .Values.global.imagePullPolicy }}
  command:
    - python
    - -I
    - -c
    - "import sys; from mnemos.cradle._haproxy import install; install(sys.argv[1])"
  args: [/mnemos/haproxy]
  {{- with (.Values.kuberay.env | default dict).RAY_SERVE_HAPROXY_BINARY_PATH }}
  env:
    - name: RAY_SERVE_HAPROXY_BINARY_PATH
      value: {{ . | quote }}
  {{- end }}
  resources:
    requests: {cpu: 100m, memory: 64Mi}
    limits: {cpu: 500m, memory: 256Mi}
  securityContext:
    {{- include "mnemos.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: haproxy
      mountPath: /mnemos/haproxy
{{- end -}}
