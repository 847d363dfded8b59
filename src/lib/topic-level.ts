/**
 * An id that can stand as one MQTT topic level: 1–128 of `A–Z a–z 0–9 _ . : -`, so no `/`, `+`,
 * `#`, no leading `$` and no control characters (MQTT 3.1.1 §4.7). fleetgate/v1 puts a unit's id
 * in its topics and uses it as the unit's broker username (docs/mqtt-protocol.md §2): the protocol
 * and the embedded broker check names with this one pattern.
 */
const TOPIC_LEVEL_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

export function isTopicLevelId(id: string): boolean {
  return TOPIC_LEVEL_ID.test(id);
}
