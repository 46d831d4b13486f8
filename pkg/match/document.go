package match

import (
	"slices"
	"strings"

	"github.com/anchore/grype/grype/distro"
	grypepkg "github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/version"
	"github.com/anchore/syft/syft/artifact"
	syftpkg "github.com/anchore/syft/syft/pkg"
	syftsbom "github.com/anchore/syft/syft/sbom"
)

// packagesOf turns syft's in-memory document into grype's packages and context, as the grype CLI
// does with the SBOM it builds of an image (grype's pkg.Provide for an image source). grype
// exports the package conversion (FromCollection) but not the steps around it, which are
// mirrored here from grype v0.121.2 (grype/pkg/provider.go and package.go): the distribution and
// its fix channels, the distribution given to every package, and the removal of the packages
// whose files an operating system package owns. Match reads a syft JSON document through grype's
// own ProvideFromReader, which runs the same steps; TestTheDocumentAndItsJSONMatchAlike checks
// that both give the same packages and findings.
func packagesOf(document *syftsbom.SBOM, channels []distro.FixChannel) ([]grypepkg.Package, grypepkg.Context) {
	d := distro.FromRelease(document.Artifacts.LinuxDistribution, channels)
	applyFixChannels(d, channels)
	source := document.Source
	pkgContext := grypepkg.Context{
		Source:                &source,
		Distro:                d,
		DistroDetectionFailed: document.Artifacts.LinuxDistribution != nil && d == nil,
	}
	packages := grypepkg.FromCollection(document.Artifacts.Packages, document.Relationships,
		grypepkg.SynthesisConfig{Distro: grypepkg.DistroConfig{FixChannels: channels}})
	if pkgContext.Distro == nil {
		pkgContext.Distro = singleDistroOf(packages)
	}
	if pkgContext.Distro != nil {
		for _, p := range packages {
			if p.Distro == nil {
				p.Distro = pkgContext.Distro
			}
		}
	}
	return grypepkg.FromPtrs(removeOwnedByOverlap(packages)), pkgContext
}

// fixChannels are the distributions' fix channels grype applies by default (Ubuntu ESM, RHEL EUS
// and the like, each when it applies).
var fixChannels = distro.DefaultFixChannels()

// applyFixChannels keeps, of the channels configured for d's distribution (its ID in any case),
// those that apply to its version: always-enabled ones, and conditionally enabled ones that d
// already names. As in grype, a channel is taken once for each of its IDs that names d.
func applyFixChannels(d *distro.Distro, channels []distro.FixChannel) {
	if d == nil {
		return
	}
	id := strings.ToLower(d.ID())
	requested := map[string]bool{}
	for _, name := range d.Channels {
		if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
			requested[name] = true
		}
	}
	ver := version.New(d.Version, version.SemanticFormat)
	var applied []string
	for _, channel := range channels {
		if channel.Name == "" {
			continue
		}
		if channel.Versions != nil && ver != nil {
			// A version the constraint cannot judge keeps the channel, as in grype.
			if applies, err := channel.Versions.Satisfied(ver); err == nil && !applies {
				continue
			}
		}
		for _, channelID := range channel.IDs {
			if channelID == "" || strings.ToLower(channelID) != id {
				continue
			}
			switch channel.Apply {
			case distro.ChannelAlwaysEnabled:
				applied = append(applied, channel.Name)
			case distro.ChannelConditionallyEnabled:
				if requested[strings.ToLower(channel.Name)] {
					applied = append(applied, channel.Name)
				}
			case distro.ChannelNeverEnabled:
			}
		}
	}
	d.Channels = applied
}

// singleDistroOf is the distribution of the packages when they name one, and only one.
func singleDistroOf(packages []*grypepkg.Package) *distro.Distro {
	var single *distro.Distro
	for _, p := range packages {
		if p.Distro == nil {
			continue
		}
		if single == nil {
			single = p.Distro
			continue
		}
		if single.Type != p.Distro.Type || single.Version != p.Distro.Version || single.Codename != p.Distro.Codename {
			return nil
		}
	}
	return single
}

// removeOwnedByOverlap drops the packages whose files an operating system package owns and that
// matching would report twice: a language or binary package of a distribution whose feed lists
// unfixed vulnerabilities too, and any binary package, when the versions agree.
func removeOwnedByOverlap(packages []*grypepkg.Package) []*grypepkg.Package {
	return slices.DeleteFunc(packages, func(p *grypepkg.Package) bool {
		for _, owner := range p.RelatedPackages[artifact.OwnershipByFileOverlapRelationship] {
			if ownedByOverlap(p, owner) {
				return true
			}
		}
		return false
	})
}

func ownedByOverlap(p, owner *grypepkg.Package) bool {
	if p == nil || owner == nil || owner.Distro == nil {
		return false
	}
	if !strings.HasPrefix(owner.Version, p.Version) && !strings.HasPrefix(p.Version, owner.Version) {
		return false
	}
	if distroFeedIsComprehensive(owner.Distro) && isOSPackage(owner) && !isOSPackage(p) {
		return true
	}
	return p.Type == syftpkg.BinaryPkg
}

// comprehensiveDistros are the distributions whose feeds list the vulnerabilities they leave
// unfixed too, so that a package an operating system package owns needs no matching of its own.
var comprehensiveDistros = []distro.Type{
	distro.ArchLinux, distro.Azure, distro.Debian, distro.Mariner, distro.RedHat, distro.SLES, distro.Ubuntu,
}

func distroFeedIsComprehensive(d *distro.Distro) bool {
	if d == nil || d.Type == distro.AmazonLinux {
		return false
	}
	for _, comprehensive := range comprehensiveDistros {
		if strings.EqualFold(string(comprehensive), d.Name()) {
			return true
		}
		for _, like := range d.IDLike {
			if strings.EqualFold(string(comprehensive), like) {
				return true
			}
		}
	}
	return false
}

func isOSPackage(p *grypepkg.Package) bool {
	switch p.Type {
	case syftpkg.DebPkg, syftpkg.RpmPkg, syftpkg.PortagePkg, syftpkg.AlpmPkg, syftpkg.ApkPkg:
		return true
	}
	return false
}
