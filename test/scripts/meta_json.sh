#!/usr/bin/env bash
# test/scripts/meta_json.sh: META.json (PGXN meta spec 1.0.0) is valid JSON
# with the spec's mandatory fields, and agrees with rungate.control: the same
# name, and a version that is default_version as a semantic version
# ('1.0' -> '1.0.0'), for the distribution and for the extension it
# provides, whose install script and docfile exist; the PostgreSQL prereq
# is a version or a range that admits every major x_postgresql lists as
# tested or untested. Perl core modules only.
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
# prereqs PostgreSQL: a version (at least) or a range of comparisons
# (">= 15.0.0, < 20.0.0"); the majors x_postgresql names tested or untested
# must be inside it
sub vcmp {   # semantic versions, a pre-release before its release
    my @a = $_[0] =~ $semver_re; my @b = $_[1] =~ $semver_re;
    for my $i (0 .. 2) { my $c = $a[$i] <=> $b[$i]; return $c if $c }
    return defined $a[3] ? (defined $b[3] ? $a[3] cmp $b[3] : -1) : (defined $b[3] ? 1 : 0);
}
my %ops = (">=" => sub { $_[0] >= 0 }, ">" => sub { $_[0] > 0 }, "<=" => sub { $_[0] <= 0 },
           "<" => sub { $_[0] < 0 }, "==" => sub { $_[0] == 0 }, "!=" => sub { $_[0] != 0 });
my @range;
if (defined(my $pg = $meta->{prereqs}{runtime}{requires}{PostgreSQL})) {
    for my $c (split /\s*,\s*/, $pg) {
        my ($op, $v) = $c =~ /^\s*(>=|<=|==|!=|>|<)?\s*(\S+)\s*$/;
        if (!defined $v || $v !~ $semver_re) { push @err, "prereqs PostgreSQL: \"$c\" is not a version or a comparison with one"; next }
        push @range, [$op // ">=", $v];
    }
}
my $x = $meta->{x_postgresql} // {};
for my $kind (qw(tested untested)) {
    for my $m (@{ $x->{$kind} // [] }) {
        # 19rc1 -> 19.0.0-rc1
        my ($maj, $pre) = $m =~ /^(\d+)(?:(beta|rc)(\d+))?$/ or do { push @err, "x_postgresql.$kind: $m is not a major (18, 19rc1)"; next };
        my $v = "$maj.0.0" . (defined $pre ? "-$pre" . ($m =~ /(\d+)$/)[0] : "");
        for my $r (@range) {
            push @err, "x_postgresql.$kind: PostgreSQL $m is outside prereqs PostgreSQL ($r->[0] $r->[1])"
                unless $ops{$r->[0]}->(vcmp($v, $r->[1]));
        }
    }
}
push @err, "x_postgresql.tested is empty" if ref $x->{tested} ne "ARRAY" || !@{ $x->{tested} };
if (@err) { print "FAIL: $_\n" for @err; exit 1 }
print "META.json: $meta->{name} $meta->{version} (rungate.control default_version $dv): ok\n";
'
