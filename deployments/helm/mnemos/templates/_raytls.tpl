{{/*
soul.policies.mTLS, the seed's "mTLS between services (enforced by SOUL)": every Ray process talks
gRPC over mutual TLS (Ray's RAY_USE_TLS), as KubeRay's TLS guide sets it up. The init container
`ray-tls` of each Ray pod writes the pod's key, and a certificate for its IP signed by the CA, into
an in-memory emptyDir (files/ray-tls-cert.py). The Ray containers mount only that folder: the CA's
key, in the Secret, is mounted into the init container alone, never where Ray runs user code.
KubeRay copies the Ray container's env and mounts into the `wait-gcs-ready` init container it adds
to workers, after ours, so its health check speaks TLS too.
The same shape as mnemos.kuberay renders from Python (mnemos/kuberay/_tls.py).
*/}}

{{/* soul.policies.mTLS checked against the valid choices; renders nothing. */}}
{{- define "mnemos.checkRayTLS" -}}
{{- $mode := (.Values.soul.policies | default dict).mTLS -}}
{{- if not (has (toString $mode) (list "enabled" "disabled")) -}}
{{- fail (printf "soul.policies.mTLS=%q: valid choices are enabled (mutual TLS between Ray processes; needs the CA Secret, see soul.policies.mTLSCA) and disabled" (toString $mode)) -}}
{{- end -}}
{{- end -}}

{{/* "true" when Ray's gRPC runs over mutual TLS, else empty. */}}
{{- define "mnemos.rayTLS" -}}
{{- include "mnemos.checkRayTLS" . -}}
{{- if eq (toString .Values.soul.policies.mTLS) "enabled" }}true{{ end -}}
{{- end -}}

{{/* The Secret holding the CA (tls.crt + tls.key): soul.policies.mTLSCA.existingSecret or <fullname>-ray-ca. */}}
{{- define "mnemos.rayCASecret" -}}
{{- (.Values.soul.policies.mTLSCA | default dict).existingSecret | default (printf "%s-ray-ca" (include "mnemos.fullname" .)) -}}
{{- end -}}

{{/* Env of every container that runs Ray (Ray's own names: docs.ray.io, "TLS Authentication"). */}}
{{- define "mnemos.rayTLSEnv" -}}
- name: RAY_USE_TLS
  value: "1"
- name: RAY_TLS_SERVER_CERT
  value: /etc/mnemos/ray-tls/tls.crt
- name: RAY_TLS_SERVER_KEY
  value: /etc/mnemos/ray-tls/tls.key
- name: RAY_TLS_CA_CERT
  value: /etc/mnemos/ray-tls/ca.crt
{{- end -}}

{{- define "mnemos.rayTLSMount" -}}
- name: ray-tls
  mountPath: /etc/mnemos/ray-tls
  readOnly: true
{{- end -}}

{{/* The pod's key and certificate in memory (never on the node's disk), and the CA for the init container. */}}
{{- define "mnemos.rayTLSVolumes" -}}
- name: ray-tls
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: ray-ca
  secret:
    secretName: {{ include "mnemos.rayCASecret" . }}
    defaultMode: 0440
{{- end -}}

{{/*
The init container that writes the pod's key and certificate. Call with
(dict "root" $ "role" "head"|"worker" "service" <head Service name, or "">): a head's certificate
also names its Services (KubeRay's RAY_IP and FQ_RAY_IP, and `service`), which workers dial.
The script bounds its own run time; it needs python and `cryptography`, both in the MNEMOS image.
*/}}
{{- define "mnemos.rayTLSInitContainer" -}}
- name: ray-tls
  image: {{ include "mnemos.image" .root }}
  imagePullPolicy: {{ .root.Values.global.imagePullPolicy }}
  command:
    - python
    - -c
    - |
      {{- .root.Files.Get "files/ray-tls-cert.py" | nindent 6 }}
  args: [{{ .role }}]
  env:
    - name: POD_IP
      valueFrom:
        fieldRef: {fieldPath: status.podIP}
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef: {fieldPath: metadata.namespace}
    - name: MNEMOS_RAY_CA_DIR
      value: /etc/mnemos/ray-ca
    - name: MNEMOS_RAY_TLS_DIR
      value: /etc/mnemos/ray-tls
    {{- with .service }}
    - name: MNEMOS_RAY_TLS_SERVICES
      value: {{ . }}
    {{- end }}
  resources:
    requests: {cpu: 100m, memory: 64Mi}
    limits: {cpu: 500m, memory: 256Mi}
  securityContext:
    {{- include "mnemos.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    - name: ray-ca
      mountPath: /etc/mnemos/ray-ca
      readOnly: true
    - name: ray-tls
      mountPath: /etc/mnemos/ray-tls
{{- end -}}
