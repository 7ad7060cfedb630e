// Package scanner is dchain's one package that imports Trivy: it scans
// images in registries with Trivy as a library (OS and language packages,
// vulnerability scanner), keeps Trivy's vulnerability DB (downloaded from an
// OCI repository, opened once per process, swapped safely while scans run)
// and its layer cache, and builds the small demo DB the dev stack and the
// tests use. Other packages reach it through an interface, so their tests
// do not link Trivy.
package scanner
