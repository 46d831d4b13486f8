package match

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/anchore/grype/grype/distro"
	grypepkg "github.com/anchore/grype/grype/pkg"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/linux"
	syftpkg "github.com/anchore/syft/syft/pkg"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
)

// TestTheDocumentAndItsJSONGiveTheSamePackages checks packagesOf, which mirrors the steps grype
// runs around its package conversion, against grype's own ProvideFromReader on the same document
// as syft JSON: the distribution and its fix channels, which packages an operating system
// package's ownership removes, and the distribution each package is matched with.
func TestTheDocumentAndItsJSONGiveTheSamePackages(t *testing.T) {
	releases := []struct {
		name     string
		release  *linux.Release
		channels []distro.FixChannel
	}{
		{name: "no distribution"},
		{name: "Debian", release: &linux.Release{ID: "debian", VersionID: "12", Version: "12 (bookworm)", VersionCodename: "bookworm"}},
		{name: "Ubuntu with extended support", release: &linux.Release{ID: "ubuntu", VersionID: "20.04", Version: "20.04.6 LTS (Focal Fossa)", IDLike: []string{"debian"}, ExtendedSupport: true}},
		{name: "Ubuntu", release: &linux.Release{ID: "ubuntu", VersionID: "22.04", IDLike: []string{"debian"}}},
		{name: "RHEL with extended update support", release: &linux.Release{ID: "rhel", VersionID: "9.4", IDLike: []string{"fedora"}, ExtendedSupport: true}},
		{name: "RHEL 7, before extended update support", release: &linux.Release{ID: "rhel", VersionID: "7.9", IDLike: []string{"fedora"}, ExtendedSupport: true}},
		{name: "a clone of RHEL", release: &linux.Release{ID: "rocky", VersionID: "9.3", IDLike: []string{"rhel", "centos", "fedora"}}},
		{name: "Amazon Linux, like RHEL but not comprehensive", release: &linux.Release{ID: "amzn", VersionID: "2", IDLike: []string{"centos", "rhel", "fedora"}}},
		{name: "Alpine", release: &linux.Release{ID: "alpine", VersionID: "3.18.4"}},
		{name: "an unknown distribution", release: &linux.Release{ID: "vigil-os", VersionID: "1"}},
		{name: "a channel always enabled, configured for the distribution's ID in capitals",
			release:  &linux.Release{ID: "rhel", VersionID: "9.4", IDLike: []string{"fedora"}},
			channels: []distro.FixChannel{{Name: "eus", IDs: []string{"RHEL"}, Apply: distro.ChannelAlwaysEnabled}}},
		{name: "RHEL of a version the channel's constraint cannot judge",
			release: &linux.Release{ID: "rhel", VersionID: "nine", IDLike: []string{"fedora"}},
			channels: []distro.FixChannel{{Name: "eus", IDs: []string{"rhel"}, Apply: distro.ChannelAlwaysEnabled,
				Versions: fixChannels.Get("eus").Versions}}},
		{name: "two channels of one distribution, in their configured order, one naming it twice",
			release: &linux.Release{ID: "rhel", VersionID: "9.4", IDLike: []string{"fedora"}},
			channels: []distro.FixChannel{
				{Name: "aus", IDs: []string{"rhel"}, Apply: distro.ChannelAlwaysEnabled},
				{Name: "eus", IDs: []string{"rhel", "RHEL"}, Apply: distro.ChannelAlwaysEnabled},
			}},
		{name: "a channel never enabled",
			release:  &linux.Release{ID: "ubuntu", VersionID: "20.04", IDLike: []string{"debian"}, ExtendedSupport: true},
			channels: []distro.FixChannel{{Name: "esm", IDs: []string{"ubuntu"}, Apply: distro.ChannelNeverEnabled}}},
	}
	for _, tc := range releases {
		t.Run(tc.name, func(t *testing.T) {
			channels := tc.channels
			if channels == nil {
				channels = fixChannels
			}
			document := documentWithOverlaps(tc.release)
			var encoded bytes.Buffer
			if err := syftjson.NewFormatEncoder().Encode(&encoded, *document); err != nil {
				t.Fatal(err)
			}
			fromJSON, jsonContext, _, err := grypepkg.ProvideFromReader(bytes.NewReader(encoded.Bytes()), grypepkg.ProviderConfig{
				SynthesisConfig: grypepkg.SynthesisConfig{Distro: grypepkg.DistroConfig{FixChannels: channels}},
			})
			if err != nil {
				t.Fatal(err)
			}
			fromDocument, documentContext := packagesOf(document, channels)

			if got, want := describePackages(fromDocument), describePackages(fromJSON); got != want {
				t.Errorf("packages of the document:\n%s\nof its JSON:\n%s", got, want)
			}
			if got, want := describeDistro(documentContext), describeDistro(jsonContext); got != want {
				t.Errorf("context of the document: %s, of its JSON: %s", got, want)
			}
			if got, want := fmt.Sprintf("%+v", documentContext.Source), fmt.Sprintf("%+v", jsonContext.Source); got != want {
				t.Errorf("source of the document %s, of its JSON %s", got, want)
			}
		})
	}
}

// documentWithOverlaps is an image's SBOM whose operating system package owns the files of a
// language package and of binaries, at versions that agree and that do not.
func documentWithOverlaps(release *linux.Release) *syftsbom.SBOM {
	newPackage := func(name, version string, kind syftpkg.Type, path string) syftpkg.Package {
		p := syftpkg.Package{Name: name, Version: version, Type: kind, Locations: file.NewLocationSet(file.NewLocation(path)),
			PURL: fmt.Sprintf("pkg:%s/%s@%s", strings.TrimSuffix(string(kind), "-pkg"), name, version)}
		p.SetID()
		return p
	}
	osPackage := newPackage("python3.11", "3.11.2-6", syftpkg.DebPkg, "/var/lib/dpkg/status")
	if release != nil && (release.ID == "rhel" || release.ID == "rocky" || release.ID == "amzn") {
		osPackage = newPackage("python3", "3.11.2-6.el9", syftpkg.RpmPkg, "/var/lib/rpm/rpmdb.sqlite")
	}
	if release != nil && release.ID == "alpine" {
		osPackage = newPackage("python3", "3.11.2-r0", syftpkg.ApkPkg, "/lib/apk/db/installed")
	}
	owned := []syftpkg.Package{
		newPackage("python", "3.11.2", syftpkg.BinaryPkg, "/usr/bin/python3.11"),
		newPackage("pip", "23.0.1", syftpkg.PythonPkg, "/usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA"),
		newPackage("python", "3.11", syftpkg.PythonPkg, "/usr/lib/python3.11/METADATA"),
		newPackage("openssl", "3.0.11", syftpkg.BinaryPkg, "/usr/lib/libssl.so.3"),
	}
	unrelated := newPackage("lodash", "4.17.20", syftpkg.NpmPkg, "/app/node_modules/lodash/package.json")

	document := &syftsbom.SBOM{
		Source: source.Description{ID: "sha256:4d2a", Name: "example", Version: "1.0"},
	}
	document.Artifacts.LinuxDistribution = release
	document.Artifacts.Packages = syftpkg.NewCollection(append(slices.Clone(owned), osPackage, unrelated)...)
	for _, p := range owned {
		document.Relationships = append(document.Relationships, artifact.Relationship{
			From: osPackage, To: p, Type: artifact.OwnershipByFileOverlapRelationship,
		})
	}
	return document
}

func describePackages(packages []grypepkg.Package) string {
	var lines []string
	for _, p := range packages {
		distro := "none"
		if p.Distro != nil {
			distro = p.Distro.String()
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s on %s", p.ID, p.Type, p.Name, p.Version, distro))
	}
	return strings.Join(lines, "\n")
}

func describeDistro(pkgContext grypepkg.Context) string {
	if pkgContext.Distro == nil {
		return fmt.Sprintf("no distribution (detection failed: %t)", pkgContext.DistroDetectionFailed)
	}
	d := pkgContext.Distro
	return fmt.Sprintf("%s %s channels %v like %v (detection failed: %t)", d.Type, d.Version, d.Channels, d.IDLike, pkgContext.DistroDetectionFailed)
}
