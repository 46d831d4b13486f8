// Package dbupdate holds the database updater: on the elected leader it checks the
// vulnerability database listing on a schedule (or imports an archive file, for air-gapped
// clusters), and after every swap has every stored SBOM matched again.
package dbupdate
