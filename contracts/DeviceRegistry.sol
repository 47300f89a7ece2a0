// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IDeviceRegistry} from "./interfaces/IDeviceRegistry.sol";

/**
 * @title DeviceRegistry
 * @notice Enrolment and revocation of VitalProof wearables by hospital admins.
 * @dev Roles: DEFAULT_ADMIN_ROLE (given to `admin` at deployment) grants and revokes
 * HOSPITAL_ADMIN_ROLE; HOSPITAL_ADMIN_ROLE enrols and revokes devices.
 */
contract DeviceRegistry is AccessControl, IDeviceRegistry {
    /// @notice May enrol and revoke devices.
    bytes32 public constant HOSPITAL_ADMIN_ROLE = keccak256("HOSPITAL_ADMIN_ROLE");

    /// @dev PROTOCOL.md §2.1: device id = first 8 bytes of SHA-256(this label ‖ public key).
    /// The 23 ASCII bytes, no terminator. Changing it breaks every enrolled device id.
    bytes internal constant DEVICE_ID_LABEL = "VitalProof/device-id/v1";

    mapping(bytes8 deviceId => Device) private _devices;

    /// @param admin Receives DEFAULT_ADMIN_ROLE, which grants HOSPITAL_ADMIN_ROLE.
    constructor(address admin) {
        if (admin == address(0)) revert DeviceRegistryZeroAdmin();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IDeviceRegistry
    function enrol(bytes8 deviceId, bytes32 publicKey, bytes32 patientRef, bytes32 site)
        external
        onlyRole(HOSPITAL_ADMIN_ROLE)
    {
        bytes8 expected = bytes8(sha256(abi.encodePacked(DEVICE_ID_LABEL, publicKey)));
        if (deviceId != expected) revert DeviceRegistryDeviceIdMismatch(expected, deviceId);
        if (publicKey == bytes32(0)) revert DeviceRegistryZeroPublicKey(deviceId);
        if (patientRef == bytes32(0)) revert DeviceRegistryZeroPatientRef(deviceId);
        if (site == bytes32(0)) revert DeviceRegistryZeroSite(deviceId);
        Device storage d = _devices[deviceId];
        if (d.enrolledAtMs != 0) revert DeviceRegistryAlreadyEnrolled(deviceId);

        uint64 nowMs = uint64(block.timestamp) * 1000;
        _devices[deviceId] = Device({
            publicKey: publicKey,
            patientRef: patientRef,
            site: site,
            enrolledAtMs: nowMs,
            revokedAtMs: 0,
            enrolledBy: msg.sender
        });
        emit DeviceEnrolled(deviceId, patientRef, site, publicKey, nowMs, msg.sender);
    }

    /// @inheritdoc IDeviceRegistry
    function revoke(bytes8 deviceId, uint64 effectiveTimeMs) external onlyRole(HOSPITAL_ADMIN_ROLE) {
        Device storage d = _devices[deviceId];
        uint64 enrolledAtMs = d.enrolledAtMs;
        if (enrolledAtMs == 0) revert DeviceRegistryUnknownDevice(deviceId);
        if (d.revokedAtMs != 0) revert DeviceRegistryAlreadyRevoked(deviceId, d.revokedAtMs);
        // enrolledAtMs > 0, so a valid effective time is never 0, the "not revoked" mark.
        if (effectiveTimeMs < enrolledAtMs) {
            revert DeviceRegistryRevocationBeforeEnrolment(deviceId, enrolledAtMs, effectiveTimeMs);
        }

        d.revokedAtMs = effectiveTimeMs;
        emit DeviceRevoked(deviceId, effectiveTimeMs, msg.sender);
    }

    /// @inheritdoc IDeviceRegistry
    function device(bytes8 deviceId) external view returns (Device memory) {
        Device memory d = _devices[deviceId];
        if (d.enrolledAtMs == 0) revert DeviceRegistryUnknownDevice(deviceId);
        return d;
    }

    /// @inheritdoc IDeviceRegistry
    function isEnrolled(bytes8 deviceId) external view returns (bool) {
        return _devices[deviceId].enrolledAtMs != 0;
    }

    /// @inheritdoc IDeviceRegistry
    function isActiveAt(bytes8 deviceId, uint64 timeMs) external view returns (bool) {
        Device storage d = _devices[deviceId];
        if (d.enrolledAtMs == 0) return false;
        uint64 revokedAtMs = d.revokedAtMs;
        return revokedAtMs == 0 || timeMs < revokedAtMs;
    }
}
