"""PocketSphinx's allphone decode of 16-bit PCM, in a child process (`decode_in_child`) or here.

The decoder holds the GIL for the whole of `process_raw` (about 0.6 s for 20 s of speech),
so in a thread it stops every other Python thread of a job: measured, a thread beside it
ran at 2% of its pace. A child process holds no GIL of ours; the parent waits on a pipe,
which releases it. The child is this file run as a script: it imports only the standard
library and `pocketsphinx` (about 50 ms to start and build the decoder), so it can run
one recognition and exit. Equal audio gives equal segments either way (a fresh decoder,
or one whose features are reset, on the same bytes).

Run as a script: argv[1] is a JSON object {"lw", "beam", "pbeam", "chunks": [[first byte,
end byte], ...]}; stdin is the PCM; stdout is a JSON list, per chunk, of [label, first
frame, last frame] segments.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

Segment = tuple[str, int, int]
"""(label, first frame, last frame inclusive) of one recognised segment, 10 ms frames."""


def make_decoder(lw: float, beam: float, pbeam: float):
    """A PocketSphinx allphone decoder with the wheel's US-English model (see `models.phones`)."""
    import pocketsphinx

    model = os.path.join(pocketsphinx.get_model_path(), "en-us")
    cfg = pocketsphinx.Config(
        hmm=os.path.join(model, "en-us"), allphone=os.path.join(model, "en-us-phone.lm.bin"),
        lm=None, dict=None, loglevel="FATAL", allphone_ci=True, lw=lw, beam=beam, pbeam=pbeam, cmn="batch",
    )
    return pocketsphinx.Decoder(cfg)


def decode_utterance(decoder, pcm16: bytes) -> list[Segment]:
    """The segments of one utterance; the feature stage's CMN state is reset first, so equal
    audio gives equal segments whatever the decoder heard before."""
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm16, full_utt=True)
    decoder.end_utt()
    return [(s.word, int(s.start_frame), int(s.end_frame)) for s in decoder.seg()]


def decode_in_child(pcm16: bytes, chunks: list[tuple[int, int]], lw: float, beam: float,
                    pbeam: float) -> list[list[Segment]]:
    """Each chunk (byte range of `pcm16`) decoded as one utterance by a child process.
    OSError when no child can be started; RuntimeError (with its stderr) when it fails."""
    request = json.dumps({"lw": lw, "beam": beam, "pbeam": pbeam, "chunks": [list(c) for c in chunks]})
    done = subprocess.run([sys.executable, "-I", os.path.abspath(__file__), request], input=pcm16,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the PocketSphinx child process failed (exit {done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip()[-500:]}")
    return [[(str(w), int(a), int(b)) for w, a, b in chunk] for chunk in json.loads(done.stdout)]


def _main() -> None:
    request = json.loads(sys.argv[1])
    pcm = sys.stdin.buffer.read()
    decoder = make_decoder(request["lw"], request["beam"], request["pbeam"])
    json.dump([decode_utterance(decoder, pcm[first:end]) for first, end in request["chunks"]], sys.stdout)


if __name__ == "__main__":
    _main()
