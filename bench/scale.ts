process.stderr.write('scale runs: not yet\n');
