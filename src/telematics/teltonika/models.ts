import type { CommandName } from '../../domain/commands.js';
import type { VehicleState } from '../../domain/state-catalogue.js';
import type { AdapterVehicleModel } from '../adapter.js';
import { type AvlRecord, ioUnsigned } from './codec.js';

/**
 * The Teltonika model catalogue: per model, which AVL I/O elements feed which vehicle state
 * property (SPEC §3), which text command (sent as Codec 12) executes each generic command, and
 * how the unit's answer is judged. AVL ids follow Teltonika's FMB/FMC and TST100 "AVL ID" lists;
 * the setdigout answers are those of the wiki's SMS/GPRS command page. Where the wiki prints no
 * answer text (CAN-CONTROL door commands, TST100 scooter lock, look-for) the patterns below are
 * fleetgate's assumption, NOT verified against hardware: check them against the installed
 * firmware's answers — each is one regular expression, so adapting is a one-line change.
 * docs/teltonika.md shows the same tables.
 */

/** Where the state properties of a model come from in an AVL record. */
export interface TeltonikaIoMap {
  /** AVL id; 1 = ignition on. */
  ignition?: number;
  /** AVL id; 1 = moving. Decoded for the command rules, not a state property. */
  movement?: number;
  /** 'gps' = the record's GPS speed; a number = an AVL id in km/h. */
  speed?: 'gps' | number;
  /** AVL ids in millivolts; logged, not state properties. */
  externalVoltage?: number;
  batteryVoltage?: number;
  /** AVL ids of DOUT1, DOUT2, … */
  digitalOutputs?: number[];
  /** Which DOUT (1-based) drives the starter-blocking relay: high = driving disabled. */
  immobilizerOutput?: number;
  /** AVL id of a lock state: 1 = locked. */
  lock?: { id: number; property: 'driving_enabled' | 'central_lock'; lockedValue: number };
  /** AVL id and the factor from its unit to kilometres. */
  mileage?: { id: number; toKilometers: number };
  /** AVL id in percent. */
  fuelOrCharge?: number;
  /** AVL id, 0–5. */
  gsmSignal?: number;
}

/** How one generic command is executed and its answer judged. */
export interface TeltonikaCommandSpec {
  /** The text command sent in a Codec 12 packet. */
  text: string;
  /** An answer matching this means the command was executed. */
  success: RegExp;
  /** An answer matching this means the unit refused because of the vehicle's state. */
  refused?: RegExp;
  /** What the simulator answers, per outcome; also documents the expected texts. */
  answers: { success: string; refused?: string; failure: string };
  /** State the vehicle is in once the unit confirmed the command. */
  resultingState?: Record<string, unknown>;
  /** Wait for the fresh AVL record the command makes the unit send (getrecord). */
  awaitRecord?: boolean;
}

export interface TeltonikaModel extends AdapterVehicleModel {
  io: TeltonikaIoMap;
  commands: Partial<Record<CommandName, TeltonikaCommandSpec>>;
}

/** FMB/FMC "getrecord": the unit saves and sends a high-priority record at once. */
const GETRECORD: TeltonikaCommandSpec = {
  text: 'getrecord',
  success: /\S/,
  answers: { success: 'Data will be sent', failure: '' },
  awaitRecord: true,
};

export const TELTONIKA_MODELS: readonly TeltonikaModel[] = [
  {
    id: 'teltonika-fmc-can-car',
    brand: 'TELTONIKA',
    model: 'FMC130 / FMB130 with CAN-CONTROL adapter (car)',
    vehicle_type: 'CAR',
    capabilities: {
      commands: [
        'REQUEST_VEHICLE_STATE',
        'ENABLE_DRIVING',
        'DISABLE_DRIVING',
        'UNLOCK_CENTRAL_LOCK',
        'LOCK_CENTRAL_LOCK',
        // Run as ordered steps by the command service: the unit has no combined command.
        'UNLOCK_AND_ENABLE_DRIVING',
        'LOCK_AND_DISABLE_DRIVING',
      ],
      vehicle_state: [
        'POSITION',
        'SPEED_IN_KILOMETERS_PER_HOUR',
        'IGNITION',
        'DRIVING_ENABLED',
        'CENTRAL_LOCK',
        'MILEAGE_IN_KILOMETERS',
        'STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT',
        'CELLULAR_SIGNAL_QUALITY',
      ],
    },
    native_combined: [],
    io: {
      ignition: 239,
      movement: 240,
      speed: 'gps',
      externalVoltage: 66,
      batteryVoltage: 67,
      digitalOutputs: [179, 180],
      immobilizerOutput: 1,
      // FMB "Total Odometer" (AVL 16) counts metres.
      mileage: { id: 16, toKilometers: 0.001 },
      // CAN "Fuel Level" in percent (AVL 89).
      fuelOrCharge: 89,
      gsmSignal: 21,
    },
    commands: {
      REQUEST_VEHICLE_STATE: GETRECORD,
      // DOUT1 drives the starter-blocking relay. FMB firmware answers "DOUT1:ON Timeout:INFINITY"
      // (older firmware "DOUT1:1 …"); "…queued" when a speed threshold holds the output back.
      DISABLE_DRIVING: {
        text: 'setdigout 1',
        success: /^DOUT1:(ON|1)\b(?!.*queued)/i,
        refused: /queued/i,
        answers: {
          success: 'DOUT1:ON Timeout:INFINITY',
          refused: 'DOUT1:ON Timeout:INFINITY Speed threshold:5km/h Speed is above threshold, queued',
          failure: 'DOUT1 Is disabled from CFG',
        },
        resultingState: { driving_enabled: false },
      },
      ENABLE_DRIVING: {
        text: 'setdigout 0',
        success: /^DOUT1:(OFF|0)\b/i,
        answers: { success: 'DOUT1:OFF Timeout:INFINITY', failure: 'DOUT1 Is disabled from CFG' },
        resultingState: { driving_enabled: true },
      },
      UNLOCK_CENTRAL_LOCK: {
        text: 'lvcanopenalldoors',
        success: /open all doors.*(ok|executed|success)/i,
        refused: /ignition|moving/i,
        answers: {
          success: 'Open all doors: executed',
          refused: 'Open all doors: not executed, vehicle moving',
          failure: 'Open all doors: error, no CAN response',
        },
        resultingState: { central_lock: 'UNLOCKED' },
      },
      LOCK_CENTRAL_LOCK: {
        text: 'lvcanclosealldoors',
        success: /close all doors.*(ok|executed|success)/i,
        // The CAN-CONTROL adapter will not lock with a door open or the ignition on.
        refused: /door.*open|ignition/i,
        answers: {
          success: 'Close all doors: executed',
          refused: 'Close all doors: not executed, door open',
          failure: 'Close all doors: error, no CAN response',
        },
        resultingState: { central_lock: 'LOCKED' },
      },
    },
  },
  {
    id: 'teltonika-tst-scooter',
    brand: 'TELTONIKA',
    model: 'TST100 (kick-scooter)',
    vehicle_type: 'KICKSCOOTER',
    capabilities: {
      commands: ['REQUEST_VEHICLE_STATE', 'ENABLE_DRIVING', 'DISABLE_DRIVING', 'DRAW_ATTENTION'],
      vehicle_state: [
        'POSITION',
        'SPEED_IN_KILOMETERS_PER_HOUR',
        'IGNITION',
        'DRIVING_ENABLED',
        'STATE_OF_CHARGE_OR_FUEL_LEVEL_IN_PERCENT',
        'CELLULAR_SIGNAL_QUALITY',
      ],
    },
    io: {
      ignition: 239,
      movement: 240,
      // TST100 "Speed" (AVL 24) in km/h.
      speed: 24,
      batteryVoltage: 67,
      // TST100 "Battery Level" (AVL 113) in percent.
      fuelOrCharge: 113,
      gsmSignal: 21,
    },
    commands: {
      REQUEST_VEHICLE_STATE: GETRECORD,
      // TST100 e-scooter command "sclockctrl #": 0 unlocks, 1 locks the scooter.
      ENABLE_DRIVING: {
        text: 'sclockctrl 0',
        success: /unlock(ed)?\b.*(ok|success)|^scooter unlocked/i,
        refused: /moving|riding/i,
        answers: { success: 'Scooter unlocked', failure: 'Scooter unlock failed: no response from scooter' },
        resultingState: { driving_enabled: true },
      },
      DISABLE_DRIVING: {
        text: 'sclockctrl 1',
        success: /^scooter locked/i,
        refused: /moving|riding/i,
        answers: {
          success: 'Scooter locked',
          refused: 'Scooter lock refused: scooter is moving',
          failure: 'Scooter lock failed: no response from scooter',
        },
        resultingState: { driving_enabled: false },
      },
      // "sclookfor 1": headlight and taillight flash plus buzzer.
      DRAW_ATTENTION: {
        text: 'sclookfor 1',
        success: /look ?for.*(on|ok|started)/i,
        answers: { success: 'Look for: ON', failure: 'Look for: error' },
      },
    },
  },
];

const BY_ID = new Map(TELTONIKA_MODELS.map((m) => [m.id, m]));

export function teltonikaModel(id: string): TeltonikaModel | undefined {
  return BY_ID.get(id);
}

/** How a unit's answer to a command is judged. */
export type AnswerVerdict = 'succeeded' | 'refused' | 'failed';

export function judgeAnswer(spec: TeltonikaCommandSpec, answer: string): AnswerVerdict {
  if (spec.refused?.test(answer)) return 'refused';
  if (spec.success.test(answer)) return 'succeeded';
  return 'failed';
}

/**
 * Translates AVL records into a vehicle state (SPEC §3). Each property carries its record's
 * GPS timestamp; when several records hold a property, the newest one wins.
 */
export function recordsToState(model: TeltonikaModel, records: readonly AvlRecord[]): VehicleState {
  const state: VehicleState = {};
  const sorted = [...records].sort((a, b) => a.timestamp.getTime() - b.timestamp.getTime());
  for (const record of sorted) {
    const timestamp = record.timestamp.toISOString();
    for (const [name, value] of Object.entries(recordValues(model.io, record))) {
      state[name] = { timestamp, value };
    }
  }
  return state;
}

function recordValues(io: TeltonikaIoMap, record: AvlRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const read = (id: number | undefined): number | undefined => (id === undefined ? undefined : ioUnsigned(record, id));
  // Teltonika reports 0/0 with no satellites when it never had a fix; that is no position.
  if (record.satellites > 0 || record.latitude !== 0 || record.longitude !== 0) {
    out.position = { lat: record.latitude, lon: record.longitude };
  }
  const speed = io.speed === 'gps' ? record.speed : read(io.speed);
  if (speed !== undefined) out.speed_in_kilometers_per_hour = speed;
  const ignition = read(io.ignition);
  if (ignition !== undefined) out.ignition = ignition ? 'ON' : 'OFF';
  const doutId = io.immobilizerOutput ? io.digitalOutputs?.[io.immobilizerOutput - 1] : undefined;
  const dout = read(doutId);
  if (dout !== undefined) out.driving_enabled = dout === 0;
  if (io.lock) {
    const v = read(io.lock.id);
    if (v !== undefined) {
      const locked = v === io.lock.lockedValue;
      out[io.lock.property] = io.lock.property === 'driving_enabled' ? !locked : locked ? 'LOCKED' : 'UNLOCKED';
    }
  }
  const mileage = io.mileage ? read(io.mileage.id) : undefined;
  if (mileage !== undefined && io.mileage)
    out.mileage_in_kilometers = Math.round(mileage * io.mileage.toKilometers * 10) / 10;
  const fuel = read(io.fuelOrCharge);
  if (fuel !== undefined && fuel <= 100) out.state_of_charge_or_fuel_level_in_percent = fuel;
  const gsm = read(io.gsmSignal);
  if (gsm !== undefined && gsm <= 5) out.cellular_signal_quality = gsm;
  return out;
}
