/* DECLARATIONS FOR A COMPILE CHECK ONLY (see README.md): the sdkconfig.h values src/native/ reads. */
#pragma once
#define CONFIG_IDF_FIRMWARE_CHIP_ID 0x0000
#define CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE 1
