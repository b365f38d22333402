// Where a watch stands, so that a new stream resumes it without losing or repeating a change
// (the same rules as the Python client's axon/client/watchcursor.py). Several changes can share
// a revision (one Raft entry: many clients' writes, a transaction, a lease revocation), and
// Last-Event-ID: N resumes after all of N; so a stream that broke partway through N resumes
// after the last revision known whole and skips the changes of N it already delivered. Every
// node builds one entry's changes in the same order, which makes that skip sound. A revision
// is whole once a later revision's change arrives or a progress mark covers it. Pure: no I/O.

export class WatchCursor {
  /** `complete`: every change up to this revision is delivered (null: not started yet). */
  constructor(complete = null) {
    this.complete = complete;
    this.partial = null; // revision whose changes were delivered in part, maybe
    this.delivered = 0; // how many of its changes were delivered
    this.toSkip = 0; // how many of them this stream has yet to repeat
  }

  /** The Last-Event-ID for a new stream (null: from now). */
  resumeAfter() {
    return this.complete;
  }

  /** A stream opened whose first change is at `start` or later. */
  newStream(start) {
    if (this.complete == null) this.complete = start - 1;
    this.toSkip = this.partial != null ? this.delivered : 0;
  }

  /** A change at `revision` arrived: true to deliver it, false for a repeat to drop. */
  change(revision) {
    if (this.partial != null && revision === this.partial) {
      if (this.toSkip > 0) {
        this.toSkip -= 1;
        return false;
      }
      this.delivered += 1;
      return true;
    }
    if (revision <= Math.max(this.partial ?? 0, this.complete ?? 0)) return false;
    if (this.partial != null) this.complete = this.partial; // a later revision: that one was whole
    this.partial = revision;
    this.delivered = 1;
    this.toSkip = 0;
    return true;
  }

  /** The stream says every change up to `revision` has been sent. */
  progress(revision) {
    if (this.partial != null && revision >= this.partial) {
      this.partial = null;
      this.delivered = 0;
      this.toSkip = 0;
    }
    if (this.complete == null || revision > this.complete) this.complete = revision;
  }
}
