/**
 * The D-Bus errors the simulated BlueZ answers with: BlueZ's own names (src/error.c) and, where
 * BlueZ has a fixed text, its text, so that a client that tells errors apart by name (as it
 * should) or logs the text sees what real BlueZ would send.
 */
import { DBusError } from 'dbus-next';

export const BLUEZ_ERRORS = {
  'org.bluez.Error.Failed': 'operation failed; the text says why',
  'org.bluez.Error.InProgress': 'the same operation is already under way',
  'org.bluez.Error.NotConnected': 'the device is not connected',
  'org.bluez.Error.AlreadyConnected': 'the device is already connected',
  'org.bluez.Error.NotSupported': 'the operation is not supported',
  'org.bluez.Error.NotPermitted': 'the attribute does not allow the operation',
  'org.bluez.Error.InvalidArguments': 'an argument is malformed or unknown',
  'org.bluez.Error.InvalidValueLength': 'ATT error 0x0d: invalid attribute value length',
  'org.bluez.Error.InvalidOffset': 'ATT error 0x07: offset beyond the value',
  'org.bluez.Error.DoesNotExist': 'no such object or operation',
} as const;

export type BluezErrorName = keyof typeof BLUEZ_ERRORS;

/** A D-Bus error reply; dbus-next sends it when a method throws or rejects with it. */
export function bluezError(name: BluezErrorName, text: string): DBusError {
  return new DBusError(name, text);
}

/**
 * How BlueZ reports an ATT error from a remote GATT server (src/gatt-client.c,
 * create_gatt_dbus_error): 0x0d as InvalidValueLength, 0x07 as InvalidOffset, any other code
 * (0x80 … 0x9f are application errors) as Failed with the code in the text.
 */
export function attError(code: number): DBusError {
  if (code === 0x0d) return bluezError('org.bluez.Error.InvalidValueLength', 'Invalid length');
  if (code === 0x07) return bluezError('org.bluez.Error.InvalidOffset', 'Invalid offset');
  return bluezError('org.bluez.Error.Failed', `Operation failed with ATT error: 0x${code.toString(16).padStart(2, '0')}`);
}
