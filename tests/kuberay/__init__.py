"""KubeRay manifests, the mnemos.kuberay package, the Helm chart."""
