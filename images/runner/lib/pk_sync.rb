# Loaded with `ruby -r` before a cell's script: Ruby buffers a pipe, so without this a cell's output (and a
# prompt printed before reading stdin) would only appear when the program ends.
$stdout.sync = true
$stderr.sync = true
