# Loaded with `perl -MPkAutoflush` before a cell's script: PerlIO buffers a pipe, so without this a cell's
# output (and a prompt printed before reading stdin) would only appear when the program ends.
package PkAutoflush;
use strict;
use warnings;
STDOUT->autoflush(1);
STDERR->autoflush(1);
1;
