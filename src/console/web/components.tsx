import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { ApiError, type Problem } from './api.js';

/** SPEC §1: how far a command that did not succeed got. */
const DELIVERY: Record<string, string> = {
  NOT_DELIVERED: 'not delivered — the vehicle never received the command',
  DELIVERED: 'delivered — the vehicle received the command',
  DELIVERED_OUTCOME_UNKNOWN: 'delivered, outcome unknown — the vehicle may have executed it',
};

/** A problem as people read it: its title and detail (and how far a command got), never a blank page. */
export function ProblemBox({ error }: { error: unknown }) {
  if (!error) return null;
  const problem: Problem =
    error instanceof ApiError
      ? error.problem
      : { type: 'client', title: 'Something went wrong in the console.', status: 0, detail: String(error) };
  return (
    <div class="problem" role="alert">
      <strong>{problem.title}</strong>
      <p>{problem.detail}</p>
      {typeof problem.delivery === 'string' && <p>Delivery: {DELIVERY[problem.delivery] ?? problem.delivery}</p>}
      {problem.flow_id && <p class="muted">Flow id {problem.flow_id}</p>}
    </div>
  );
}

/** A modal confirmation (`<dialog>`); its confirming button is named `Confirm`. */
export function ConfirmDialog(props: {
  title: string;
  children: ComponentChildren;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        props.onCancel();
      }}
    >
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div class="actions">
        <button type="button" class="primary" onClick={props.onConfirm}>
          Confirm
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </dialog>
  );
}

export function Badge({ value }: { value: string }) {
  return <span class={`badge badge-${value.toLowerCase()}`}>{value.replace(/_/g, ' ')}</span>;
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}
