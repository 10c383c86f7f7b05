#!/usr/bin/env bash
# test/scripts/meta_json.sh: META.json (PGXN meta spec 1.0.0) is valid JSON
# with the spec's mandatory fields, and agrees with rungate.control: the same
# name, and a version that is default_version as a semantic version
# ('1.0' -> '1.0.0'), for the distribution and for the extension it
# provides, whose install script and docfile exist. Perl core modules only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
perl -MJSON::PP -e '
use strict; use warnings;
my @err;
open my $fh, "<", "META.json" or die "FAIL: no META.json\n";
my $meta = eval { local $/; JSON::PP->new->decode(<$fh>) } or die "FAIL: META.json is not valid JSON: $@";
open my $cf, "<", "rungate.control" or die "FAIL: no rungate.control\n";
my %control;
while (<$cf>) { $control{$1} = $2 if /^\s*(\w+)\s*=\s*\x27([^\x27]*)\x27/ }
my $ext = "rungate";
my $dv = $control{default_version} // die "FAIL: no default_version in rungate.control\n";
# PGXN wants a semantic version; the control file has major.minor
my $semver = $dv =~ /^\d+\.\d+$/ ? "$dv.0" : $dv;
my $semver_re = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;

for my $f (qw(name abstract version maintainer license provides meta-spec)) {
    push @err, "missing mandatory field $f" unless defined $meta->{$f};
}
push @err, "meta-spec.version is not 1.0.0" unless ($meta->{"meta-spec"}{version} // "") eq "1.0.0";
push @err, "name is not $ext" unless ($meta->{name} // "") eq $ext;
push @err, "version $meta->{version} is not a semantic version" unless ($meta->{version} // "") =~ $semver_re;
push @err, "version $meta->{version} does not match default_version $dv of rungate.control ($semver)"
    unless ($meta->{version} // "") eq $semver;
my $p = $meta->{provides}{$ext};
if (!$p) {
    push @err, "provides has no $ext";
} else {
    push @err, "provides.$ext.version $p->{version} is not $semver" unless ($p->{version} // "") eq $semver;
    # the install script of default_version, or the base script that
    # CREATE EXTENSION upgrades from when there is none (1.0 + 1.0--1.1)
    my ($base) = sort grep { !/--.*--/ } glob("$ext--*.sql");
    my $file = -f "$ext--$dv.sql" ? "$ext--$dv.sql" : ($base // "$ext--$dv.sql");
    push @err, "provides.$ext.file is not $file" unless ($p->{file} // "") eq $file;
    for my $k (qw(file docfile)) {
        push @err, "provides.$ext.$k: $p->{$k} does not exist" if defined $p->{$k} && !-f $p->{$k};
    }
}
my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd
    freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0
    mozilla_1_1 openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted
    unrestricted unknown);
my @lic = ref $meta->{license} eq "HASH" ? () : ref $meta->{license} ? @{ $meta->{license} } : ($meta->{license} // ());
for (@lic) { push @err, "unknown license $_" unless $licenses{$_} }
my $rs = $meta->{release_status} // "stable";
push @err, "release_status $rs" unless $rs =~ /^(stable|testing|unstable)$/;
if (my $pg = $meta->{prereqs}{runtime}{requires}{PostgreSQL}) {
    push @err, "prereqs PostgreSQL $pg is not a semantic version" unless $pg =~ $semver_re;
}
if (@err) { print "FAIL: $_\n" for @err; exit 1 }
print "META.json: $meta->{name} $meta->{version} (rungate.control default_version $dv): ok\n";
'
