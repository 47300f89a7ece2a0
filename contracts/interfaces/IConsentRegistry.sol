// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.20;

/**
 * @title IConsentRegistry
 * @notice Patients' consent to share their wearable data with researchers: which researcher
 * may receive which sensors of which patient, recorded in which time window, until when, and
 * for which purpose; and the question a gateway asks before every disclosure, "may researcher
 * R receive sensor S of patient P recorded at time T, now?".
 *
 * WARNING: everything here is public forever. A patient appears only as the opaque 32-byte
 * `patientRef` (a keyed HMAC of the pseudonym, docs/contracts.md) and as the Ethereum address
 * that speaks for it; a purpose only as the hash of an off-chain document. Never a name, a
 * medical record number, a pseudonym or a reading.
 *
 * Identity: a hospital admin binds one address to each `patientRef` (bindPatient). Only that
 * address grants and revokes for the `patientRef`. A rebind (key lost or rotated) moves that
 * power to the new address at once; the grants made before stay in force, because they belong
 * to the `patientRef`, not to the address that signed them. The hospital admin is trusted with
 * this binding (the hospital alone knows which person a pseudonym is); every bind is public as
 * a PatientBound event naming the previous address.
 *
 * Times are Unix milliseconds (the device clock's unit, firmware-proto/PROTOCOL.md §3); "now"
 * is the block's timestamp times 1000.
 */
interface IConsentRegistry {
    /**
     * @notice One consent grant. `revokedAtMs` is 0 while the grant is not revoked.
     * @dev Field order packs the struct into four storage slots.
     */
    struct Grant {
        bytes32 patientRef;
        bytes32 purposeRef;
        address researcher;
        uint16 sensorMask;
        uint64 dataFromMs;
        uint64 dataToMs;
        uint64 expiresAtMs;
        uint64 grantedAtMs;
        uint64 revokedAtMs;
    }

    /**
     * @notice Verdict of checkGrant, checked in this order. gateway/chain/contracts.ts mirrors
     * the names and values as GRANT_STATUS.
     */
    enum GrantStatus {
        OK,
        UNKNOWN_GRANT,
        NOT_GRANTEE,
        REVOKED,
        EXPIRED,
        SENSOR_NOT_GRANTED,
        OUTSIDE_DATA_WINDOW
    }

    /// @notice A hospital admin bound `patient` to `patientRef`; `previous` lost control of it (zero at the first bind).
    event PatientBound(bytes32 indexed patientRef, address indexed patient, address indexed previous);

    /// @notice The patient of `patientRef` granted `researcher` the sensors of `sensorMask`, recorded within [dataFromMs, dataToMs], until `expiresAtMs`.
    event ConsentGranted(
        uint64 indexed grantId,
        bytes32 indexed patientRef,
        address indexed researcher,
        uint16 sensorMask,
        uint64 dataFromMs,
        uint64 dataToMs,
        uint64 expiresAtMs,
        bytes32 purposeRef
    );

    /// @notice The patient of `patientRef` revoked grant `grantId` of `researcher` at `revokedAtMs` (block time).
    event ConsentRevoked(uint64 indexed grantId, bytes32 indexed patientRef, address indexed researcher, uint64 revokedAtMs);

    /// @notice The constructor was given the zero address as admin.
    error ConsentRegistryZeroAdmin();
    /// @notice The patient reference is all zeros.
    error ConsentRegistryZeroPatientRef();
    /// @notice The patient address is the zero address.
    error ConsentRegistryZeroPatient(bytes32 patientRef);
    /// @notice `patient` is bound to `boundTo` already (equal to the requested ref: the bind is done); an address speaks for one patientRef at most.
    error ConsentRegistryAddressAlreadyBound(address patient, bytes32 boundTo);
    /// @notice `caller` is not the address bound to `patientRef` (`patient`, zero when none is bound).
    error ConsentRegistryNotPatient(bytes32 patientRef, address patient, address caller);
    /// @notice The researcher is the zero address.
    error ConsentRegistryZeroResearcher();
    /// @notice The sensor mask is 0, or sets bit 0 (no sensor has code 0).
    error ConsentRegistryBadSensorMask(uint16 sensorMask);
    /// @notice The data window starts after it ends.
    error ConsentRegistryInvertedDataWindow(uint64 dataFromMs, uint64 dataToMs);
    /// @notice The expiry is not after the block time `nowMs`: the grant would never be in force.
    error ConsentRegistryExpiryNotInFuture(uint64 expiresAtMs, uint64 nowMs);
    /// @notice The purpose reference is all zeros.
    error ConsentRegistryZeroPurposeRef();
    /// @notice The pair already has `max` grants that are neither revoked nor expired; revoke one first.
    error ConsentRegistryTooManyOpenGrants(bytes32 patientRef, address researcher, uint256 max);
    /// @notice No grant has this id.
    error ConsentRegistryUnknownGrant(uint64 grantId);
    /// @notice The grant is revoked already, at `revokedAtMs`; a revocation is final.
    error ConsentRegistryAlreadyRevoked(uint64 grantId, uint64 revokedAtMs);

    /**
     * @notice Binds `patient` to `patientRef`: from now on only `patient` grants and revokes for
     * it. Only HOSPITAL_ADMIN_ROLE.
     * @dev A rebind (lost or rotated key) replaces the previous address at once: it can no longer
     * grant or revoke, and may be bound again (to any ref). Grants made before the rebind stay in
     * force and the new address may revoke them. An address speaks for one patientRef at most,
     * so "my grants" is never ambiguous. Retrying a bind that went through reverts with
     * ConsentRegistryAddressAlreadyBound(patient, patientRef).
     * @param patientRef The patient's opaque reference (HMAC of the pseudonym); not zero.
     * @param patient The address that speaks for the patient; not zero, not bound to any ref.
     * @custom:throws ConsentRegistryZeroPatientRef, ConsentRegistryZeroPatient,
     * ConsentRegistryAddressAlreadyBound, AccessControlUnauthorizedAccount.
     */
    function bindPatient(bytes32 patientRef, address patient) external;

    /**
     * @notice Grants `researcher` the sensors of `sensorMask`, recorded within [dataFromMs,
     * dataToMs], until `expiresAtMs`. Only the address bound to `patientRef`.
     * @dev Grant ids are sequential from 1, over all patients. A pair (patientRef, researcher)
     * holds at most MAX_OPEN_GRANTS_PER_PAIR grants that are neither revoked nor expired, which
     * bounds isPermitted; expired and revoked grants make room on their own.
     * @param patientRef The caller's patient reference.
     * @param researcher The grantee; not zero.
     * @param sensorMask Bit c set = sensor code c (firmware-proto/catalogue.ts, PROTOCOL.md §4);
     * not 0, bit 0 clear. Bits 8-15 are accepted for codes the catalogue may add.
     * @param dataFromMs First device timestamp covered, Unix ms, inclusive.
     * @param dataToMs Last device timestamp covered, Unix ms, inclusive; not before dataFromMs.
     * It may lie in the future (consent for data still to be recorded).
     * @param expiresAtMs Unix ms at which the grant stops being in force; after the block time.
     * @param purposeRef Hash of the off-chain purpose or protocol document; not zero.
     * @return grantId The new grant's id.
     * @custom:throws ConsentRegistryNotPatient, ConsentRegistryZeroResearcher, ConsentRegistryBadSensorMask,
     * ConsentRegistryInvertedDataWindow, ConsentRegistryExpiryNotInFuture, ConsentRegistryZeroPurposeRef,
     * ConsentRegistryTooManyOpenGrants.
     */
    function grant(
        bytes32 patientRef,
        address researcher,
        uint16 sensorMask,
        uint64 dataFromMs,
        uint64 dataToMs,
        uint64 expiresAtMs,
        bytes32 purposeRef
    ) external returns (uint64 grantId);

    /**
     * @notice Revokes grant `grantId` from now on. Only the address bound to its patientRef now.
     * @dev A revocation is final; the grant stays readable with its revokedAtMs. Revoking an
     * expired grant is allowed: it grants nothing any more, but the record shows the patient
     * withdrew, and checkGrant then answers REVOKED.
     * @param grantId The grant.
     * @custom:throws ConsentRegistryUnknownGrant, ConsentRegistryNotPatient, ConsentRegistryAlreadyRevoked.
     */
    function revoke(uint64 grantId) external;

    /**
     * @notice The grant `grantId`, revoked or not.
     * @param grantId The grant id, from 1.
     * @return The grant.
     * @custom:throws ConsentRegistryUnknownGrant when no grant has this id.
     */
    function getGrant(uint64 grantId) external view returns (Grant memory);

    /**
     * @notice The address bound to `patientRef`, zero when none is.
     * @param patientRef The patient reference.
     * @return The patient's address.
     */
    function patientOf(bytes32 patientRef) external view returns (address);

    /**
     * @notice The patientRef `patient` is bound to, zero when none.
     * @param patient An address.
     * @return The patient reference.
     */
    function patientRefOf(address patient) external view returns (bytes32);

    /**
     * @notice Every grant made for `patientRef`, in grant order, revoked and expired ones included.
     * @dev The whole list: for tools and tests. A gateway follows the events instead.
     * @param patientRef The patient reference.
     * @return The grant ids.
     */
    function grantIdsOf(bytes32 patientRef) external view returns (uint64[] memory);

    /**
     * @notice Every grant made to `researcher`, in grant order, revoked and expired ones included.
     * @dev The whole list: for tools and tests. A gateway follows the events instead.
     * @param researcher The researcher's address.
     * @return The grant ids.
     */
    function grantIdsFor(address researcher) external view returns (uint64[] memory);

    /**
     * @notice May `researcher` receive sensor `sensor` of `patientRef` recorded at `recordedAtMs`,
     * now? Yes when a grant of the pair is neither revoked nor expired, covers the sensor and
     * has the time in its data window.
     * @dev A verdict, never a revert. Looks only at the pair's open grants (at most
     * MAX_OPEN_GRANTS_PER_PAIR), oldest first, and stops at the first that covers the request.
     * @param researcher The would-be recipient.
     * @param patientRef The patient reference.
     * @param sensor Sensor code (PROTOCOL.md §4); 0 and codes above 15 are never granted.
     * @param recordedAtMs The reading's device timestamp, Unix ms.
     * @return permitted True when a grant covers the request.
     * @return grantId That grant (the oldest that covers it), 0 when none does.
     */
    function isPermitted(address researcher, bytes32 patientRef, uint8 sensor, uint64 recordedAtMs)
        external
        view
        returns (bool permitted, uint64 grantId);

    /**
     * @notice Why grant `grantId` does or does not let `researcher` receive sensor `sensor`
     * recorded at `recordedAtMs`, now: OK, or the first failing check of GrantStatus.
     * @dev A verdict, never a revert, for the gateway to tell a researcher why. A grant both
     * revoked and expired is REVOKED.
     * @param grantId The grant the researcher invokes.
     * @param researcher The would-be recipient.
     * @param sensor Sensor code.
     * @param recordedAtMs The reading's device timestamp, Unix ms.
     * @return code The verdict.
     */
    function checkGrant(uint64 grantId, address researcher, uint8 sensor, uint64 recordedAtMs)
        external
        view
        returns (GrantStatus code);
}
