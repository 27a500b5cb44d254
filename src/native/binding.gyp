# The N-API module of the OTA slot (host flash + simulated bootloader): build/Release/ota_slot.node; and,
# for the tests only, the same binding over the ESP32 layer and RAM fakes of ESP-IDF:
# build/Release/ota_slot_esp32_fakes.node.
# Built by scripts/build-native.sh (node-gyp bundled with npm, offline, against the machine's Node
# headers). The C core is compiled with -Wall -Wextra -Werror; it links Debian's libmbedcrypto (MD5 of the
# partition table) and hashes SHA-256 through napi/sha256-openssl/mbedtls/sha256.h, mbedTLS's API over the
# OpenSSL inside Node (first on the include path; see that header for why).
{
  "targets": [
    {
      "target_name": "ota_slot",
      "sources": [
        "core/ota_errors.c",
        "core/ota_image.c",
        "core/ota_writer.c",
        "core/ota_layout.c",
        "core/ota_otadata.c",
        "core/ota_running.c",
        "core/ota_sign.c",
        "host/ota_boot_sim.c",
        "host/ota_host.c",
        "napi/ota_napi.c"
      ],
      "include_dirs": ["napi/sha256-openssl"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_c!": ["-std=gnu99"],
      "libraries": ["-lmbedcrypto"]
    },
    # Test-only: the same N-API binding over the ESP32 layer (esp32/ota_esp32.c, built with ESP_PLATFORM
    # against the declarations in test/native/esp32-stubs) and RAM-backed fakes of the ESP-IDF functions it
    # calls (test/native/esp32-fakes). No ota_host.c: the fakes provide its interface.
    {
      "target_name": "ota_slot_esp32_fakes",
      "sources": [
        "core/ota_errors.c",
        "core/ota_image.c",
        "core/ota_writer.c",
        "core/ota_layout.c",
        "core/ota_otadata.c",
        "core/ota_running.c",
        "core/ota_sign.c",
        "host/ota_boot_sim.c",
        "esp32/ota_esp32.c",
        "napi/ota_napi.c",
        "../../test/native/esp32-fakes/esp32_fakes.c"
      ],
      "include_dirs": ["napi/sha256-openssl", "../../test/native/esp32-stubs"],
      "defines": ["NAPI_VERSION=8", "ESP_PLATFORM"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_c!": ["-std=gnu99"],
      "libraries": ["-lmbedcrypto"]
    }
  ]
}
