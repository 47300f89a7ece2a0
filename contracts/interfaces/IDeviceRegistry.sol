// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.20;

/**
 * @title IDeviceRegistry
 * @notice The on-chain registry of VitalProof wearables: which Ed25519 key speaks for which
 * device id, for which patient pseudonym, and from when a device is revoked.
 *
 * WARNING: everything here is public forever. Only a device id, its public key, an opaque
 * 32-byte patient reference and an opaque 32-byte site id go on chain: never a name, a
 * medical record number or a reading. docs/contracts.md says how `patientRef` is derived.
 *
 * Times are Unix milliseconds (the device clock's unit, firmware-proto/PROTOCOL.md §3);
 * enrolment time is the block's timestamp times 1000.
 */
interface IDeviceRegistry {
    /// @notice One enrolled device. `revokedAtMs` is 0 while the device is not revoked.
    struct Device {
        bytes32 publicKey;
        bytes32 patientRef;
        bytes32 site;
        uint64 enrolledAtMs;
        uint64 revokedAtMs;
        address enrolledBy;
    }

    /// @notice A hospital admin enrolled `deviceId` with `publicKey` for `patientRef` at `site`.
    event DeviceEnrolled(
        bytes8 indexed deviceId,
        bytes32 indexed patientRef,
        bytes32 indexed site,
        bytes32 publicKey,
        uint64 enrolledAtMs,
        address enrolledBy
    );

    /// @notice A hospital admin revoked `deviceId`: frames timestamped at or after `effectiveTimeMs` are refused.
    event DeviceRevoked(bytes8 indexed deviceId, uint64 effectiveTimeMs, address revokedBy);

    /// @notice The constructor was given the zero address as admin.
    error DeviceRegistryZeroAdmin();
    /// @notice The public key is all zeros.
    error DeviceRegistryZeroPublicKey(bytes8 deviceId);
    /// @notice The patient reference is all zeros.
    error DeviceRegistryZeroPatientRef(bytes8 deviceId);
    /// @notice The site id is all zeros.
    error DeviceRegistryZeroSite(bytes8 deviceId);
    /// @notice `got` is not the device id that PROTOCOL.md §2.1 derives from the key (`expected`).
    error DeviceRegistryDeviceIdMismatch(bytes8 expected, bytes8 got);
    /// @notice The device id is already enrolled (a device that gets a new key gets a new id).
    error DeviceRegistryAlreadyEnrolled(bytes8 deviceId);
    /// @notice The device id was never enrolled.
    error DeviceRegistryUnknownDevice(bytes8 deviceId);
    /// @notice The device is already revoked, effective from `revokedAtMs`; a revocation is final.
    error DeviceRegistryAlreadyRevoked(bytes8 deviceId, uint64 revokedAtMs);
    /// @notice The effective time of a revocation lies before the device's enrolment.
    error DeviceRegistryRevocationBeforeEnrolment(bytes8 deviceId, uint64 enrolledAtMs, uint64 effectiveTimeMs);

    /**
     * @notice Enrols a device. Only HOSPITAL_ADMIN_ROLE.
     * @dev The contract checks that `deviceId` is derived from `publicKey` (PROTOCOL.md §2.1) and
     * that no field is zero. It cannot afford the curve checks of PROTOCOL.md §2.2 (on curve,
     * canonical, prime order): the enrolling tool MUST run them before it sends the transaction.
     * @param deviceId First 8 bytes of SHA-256("VitalProof/device-id/v1" ‖ publicKey).
     * @param publicKey The device's 32-byte Ed25519 public key (RFC 8032 encoding).
     * @param patientRef Opaque 32-byte reference to the patient pseudonym; never a name or MRN.
     * @param site Opaque 32-byte id of the enrolling gateway or site.
     * @custom:throws DeviceRegistryDeviceIdMismatch, DeviceRegistryZeroPublicKey, DeviceRegistryZeroPatientRef,
     * DeviceRegistryZeroSite, DeviceRegistryAlreadyEnrolled, AccessControlUnauthorizedAccount.
     */
    function enrol(bytes8 deviceId, bytes32 publicKey, bytes32 patientRef, bytes32 site) external;

    /**
     * @notice Revokes a device from `effectiveTimeMs` on. Only HOSPITAL_ADMIN_ROLE.
     * @dev The effective time may lie in the past (a key found compromised: frames signed since
     * then stop verifying), now, or in the future (a planned decommissioning), but not before
     * the enrolment; this also catches seconds passed for milliseconds. A revocation is final.
     * @param deviceId The enrolled device.
     * @param effectiveTimeMs Unix ms; frames with a timestamp at or after it are refused.
     * @custom:throws DeviceRegistryUnknownDevice, DeviceRegistryAlreadyRevoked,
     * DeviceRegistryRevocationBeforeEnrolment, AccessControlUnauthorizedAccount.
     */
    function revoke(bytes8 deviceId, uint64 effectiveTimeMs) external;

    /**
     * @notice The record of an enrolled device.
     * @param deviceId The device id.
     * @return The device record.
     * @custom:throws DeviceRegistryUnknownDevice when the device was never enrolled.
     */
    function device(bytes8 deviceId) external view returns (Device memory);

    /**
     * @notice Whether `deviceId` was ever enrolled (revoked devices stay enrolled).
     * @param deviceId The device id.
     * @return True when enrolled.
     */
    function isEnrolled(bytes8 deviceId) external view returns (bool);

    /**
     * @notice Whether a frame of `deviceId` timestamped `timeMs` comes from a valid device: the device
     * is enrolled and not revoked at that time (PROTOCOL.md §5.3 step 4: refused if revokedAt ≤ timestamp).
     * @dev The enrolment time is no lower bound: a frame signed before enrolment (a store-and-forward
     * backlog) is still the device's. A verdict, never a revert: false for an unknown device.
     * @param deviceId The device id.
     * @param timeMs The frame's device timestamp, Unix ms.
     * @return True when the device is enrolled and `timeMs` is before its revocation, if any.
     */
    function isActiveAt(bytes8 deviceId, uint64 timeMs) external view returns (bool);
}
